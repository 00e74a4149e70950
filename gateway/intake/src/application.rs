//! Acknowledgements that say what became of a message, beyond "stored":
//!
//! - original mode, on a route set `ack = "after-mapping"`: the intake
//!   journals the message, waits for the mapping stage to map it, and only
//!   then answers, AA (stored and mapped) or AE/AR with an ERR naming the
//!   segment and field the mapper refused ([`Intake::process`] calls
//!   [`AckSettings::after_mapping`] and [`after_mapping_ack`]);
//! - enhanced mode (MSH-15/MSH-16): the accept ACK (CA) still leaves after
//!   the journal commit; the application ACK (AA, or AE/AR with the mapping
//!   or delivery error) follows once the message is mapped and every
//!   delivery is over, sent by [`ApplicationAcks::run`] to the return
//!   endpoint `[[hl7v2.application_acks]]` names for the sender (an MLLP
//!   listener, or an HTTPS URL the ACK is POSTed to). The
//!   journal commit records that one is owed, so a restart never forgets it.
//!
//! [`Intake::process`]: crate::Intake::process

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hl7v2::ack::build_ack;
use hl7v2::{AckCode, AckCondition, AckError, ErrorLocation, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use passerelle_config::{
    application_ack_endpoint, AckEndpointKind, ApplicationAckEndpoint, RouteAck, RouteConfig,
};
use passerelle_storage::application_acks::{self, Outcome, NOT_WANTED, SENT, ZAM};
use passerelle_storage::SharedStore;
use passerelle_telemetry::events::ApplicationAckSettled;
use passerelle_telemetry::metrics::Metrics;

/// How long a return endpoint has to take a connection, and then to
/// answer the application ACK with a frame of its own.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Owed acknowledgements looked for at once.
const PAGE: i64 = 100;
/// The longest wait before an endpoint that failed is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the intake needs to know about acknowledgements beyond the
/// journal: routes that answer after mapping, and where application ACKs
/// go.
#[derive(Clone, Default)]
pub struct AckSettings {
    pub routes: Vec<RouteConfig>,
    pub after_mapping_timeout: Duration,
    pub application_acks: Vec<ApplicationAckEndpoint>,
    /// Read for mapping outcomes (`after-mapping` routes).
    pub store: Option<SharedStore>,
}

/// Targets whose refusals are written for the sender (the DMP
/// connector's: the rule broken and the field to fix, or the DMP's code
/// and text); a sender's application ACK carries them in ERR-8. Other
/// targets' answers may quote the records they refused and stay in
/// `passerelle messages show`.
pub type ExplainedTargets = Vec<String>;

impl AckSettings {
    /// Whether a message with this header is answered after its mapping:
    /// original mode, and a route that applies to it says so.
    pub fn after_mapping(&self, transport: &str, header: &crate::acks::Header) -> bool {
        matches!(header.mode, hl7v2::AckMode::Original)
            && self.store.is_some()
            && self.routes.iter().any(|route| {
                route.ack == RouteAck::AfterMapping
                    && route.matches(
                        transport,
                        &header.sending_application,
                        &header.sending_facility,
                        &header.message_type,
                    )
            })
    }

    /// The journal's promise of an application ACK for a message with
    /// this header: its MSH-16 condition when it is in enhanced mode,
    /// wants one ever, and a return endpoint serves its sender; else empty.
    pub fn owed_application_ack(
        &self,
        header: &crate::acks::Header,
        message: &Message<'_>,
    ) -> String {
        let endpoint = || {
            application_ack_endpoint(
                &self.application_acks,
                &header.sending_application,
                &header.sending_facility,
            )
        };
        let hl7v2::AckMode::Enhanced { application, .. } = header.mode else {
            // An original-mode sender of the ANS profile that asked for the
            // DMP's reception gets the profile's business acknowledgement.
            if hl7v2::zam::asks_dmp_reception_ack(message) && endpoint().is_some() {
                return application_acks::ZAM.to_string();
            }
            return String::new();
        };
        let condition = match application {
            AckCondition::Never => return String::new(),
            AckCondition::Always => "AL",
            AckCondition::ErrorOnly => "ER",
            AckCondition::SuccessOnly => "SU",
        };
        application_ack_endpoint(
            &self.application_acks,
            &header.sending_application,
            &header.sending_facility,
        )
        .map(|_| condition.to_string())
        .unwrap_or_default()
    }

    /// Waits for message `journal_id`'s mapping outcome, at most the
    /// configured time; `None` when it did not come (or cannot be read).
    pub async fn mapping_outcome(&self, journal_id: i64) -> Option<Outcome> {
        let store = self.store.clone()?;
        let deadline = Instant::now() + self.after_mapping_timeout;
        // The mapping stage is woken by the journal commit; a short poll
        // of one row by its key finds its outcome without a channel
        // between stages (they meet in the store, also across instances).
        let mut pause = Duration::from_millis(2);
        loop {
            let store = store.clone();
            let read = tokio::task::spawn_blocking(move || {
                application_acks::mapping_outcome(store.as_ref(), journal_id)
            })
            .await;
            match read {
                Ok(Ok(Some(outcome))) => return Some(outcome),
                Ok(Ok(None)) => {}
                Ok(Err(error)) => {
                    tracing::error!(journal_id, error = %error, "mapping outcome unreadable");
                    return None;
                }
                Err(_) => return None,
            }
            if Instant::now() + pause > deadline {
                return None;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// The code and ERR an outcome is answered with: AA when mapped (or
/// nothing applied) and delivered everywhere; AR when no mapper handles
/// the message type; AE, naming what failed, otherwise. `deliveries`
/// says whether delivery failures count (the application ACK) or not
/// (an after-mapping ACK leaves before delivery).
pub fn outcome_ack(
    outcome: &Outcome,
    deliveries: bool,
    explained: &[String],
) -> (AckCode, Option<AckError>) {
    match outcome {
        Outcome::Unrouted => (AckCode::AA, None),
        Outcome::MappingFailed(reason) => mapping_error(reason),
        Outcome::Routed(list) => {
            // A refusal written for the sender: its text, and the field it
            // is about (kept with the delivery: `PID-32`) as ERR-2.
            let refused = list.iter().find(|d| {
                deliveries
                    && d.state == "dead"
                    && d.last_error.is_some()
                    && explained.iter().any(|t| t == &d.target)
            });
            if let Some(refused) = refused {
                return (
                    AckCode::AE,
                    Some(AckError {
                        code: 207,
                        diagnostic: refused.last_error.clone().unwrap_or_default(),
                        location: refused.reason.location.as_deref().and_then(parse_location),
                    }),
                );
            }
            let failed: Vec<String> = list
                .iter()
                .filter(|d| deliveries && d.state == "dead")
                .map(|d| match d.last_status {
                    Some(status) => format!("`{}` (HTTP {status})", d.target),
                    None => format!("`{}`", d.target),
                })
                .collect();
            if failed.is_empty() {
                (AckCode::AA, None)
            } else {
                (
                    AckCode::AE,
                    Some(AckError {
                        code: 207,
                        diagnostic: format!(
                            "mapped, but delivery failed to {}; see passerelle messages show",
                            failed.join(", ")
                        ),
                        location: None,
                    }),
                )
            }
        }
    }
}

/// What the DMP did with a message, for its `ZAM^Z01`: `None` when no
/// delivery went to a DMP target (`explained`). The refusal's code is the
/// one kept with the delivery (the DMP's, or `PASSERELLE` for a rule
/// checked before sending), with its text.
fn dmp_reception(outcome: &Outcome, explained: &[String]) -> Option<hl7v2::zam::DmpReception> {
    use hl7v2::zam::DmpReception;
    match outcome {
        Outcome::MappingFailed(reason) => Some(DmpReception::Refused {
            code: "PASSERELLE".into(),
            text: format!("not mapped: {reason}"),
        }),
        Outcome::Unrouted => None,
        Outcome::Routed(list) => {
            let to_dmp: Vec<_> = list
                .iter()
                .filter(|d| explained.iter().any(|t| t == &d.target))
                .collect();
            if to_dmp.is_empty() {
                return None;
            }
            match to_dmp.iter().find(|d| d.state == "dead") {
                None => Some(DmpReception::Accepted),
                Some(dead) => Some(DmpReception::Refused {
                    code: dead
                        .reason
                        .code
                        .clone()
                        .unwrap_or_else(|| "PASSERELLE".into()),
                    text: dead.last_error.clone().unwrap_or_default(),
                }),
            }
        }
    }
}

/// A mapping failure as the journal keeps it (`route `r`: PID(1)-3:
/// detail`) as an ERR: the location parsed back into ERR-2, the detail in
/// ERR-8.
fn mapping_error(reason: &str) -> (AckCode, Option<AckError>) {
    let detail = reason
        .strip_prefix("route `")
        .and_then(|rest| rest.split_once("`: "))
        .map_or(reason, |(_, detail)| detail);
    let (location, text) = match detail.split_once(": ") {
        Some((place, text)) => match parse_location(place) {
            Some(location) => (Some(location), text),
            None => (None, detail),
        },
        None => (None, detail),
    };
    let unsupported = text.starts_with("no mapper handles");
    let error = AckError {
        code: if unsupported { 200 } else { 207 },
        diagnostic: format!("not mapped: {text}"),
        location,
    };
    let code = if unsupported {
        AckCode::AR
    } else {
        AckCode::AE
    };
    (code, Some(error))
}

/// `SEG-f` or `SEG(n)-f` (a mapper's error location) as an ERR-2.
fn parse_location(text: &str) -> Option<ErrorLocation> {
    let (segment, field) = text.split_once('-')?;
    let (segment, sequence) = match segment.split_once('(') {
        Some((name, rest)) => (name, rest.strip_suffix(')')?.parse().ok()?),
        None => (segment, 1),
    };
    let field = field.split(['.', '-']).next()?.parse().ok()?;
    let valid = segment.len() == 3
        && segment
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    valid.then(|| ErrorLocation {
        segment: segment.to_string(),
        sequence,
        field,
    })
}

/// The ACK for an `after-mapping` message: from its mapping outcome, or,
/// when the mapping did not finish in time, AE saying the message is kept
/// (a resend is recognised as the same message and waits again).
pub fn after_mapping_ack(
    message: &Message<'_>,
    outcome: Option<&Outcome>,
    control_id: &str,
    timestamp: &str,
) -> (AckCode, Bytes) {
    let (code, error) = match outcome {
        Some(outcome) => outcome_ack(outcome, false, &[]),
        None => (
            AckCode::AE,
            Some(AckError {
                code: 207,
                diagnostic: "stored, but not mapped in time; it will be mapped (a resend is \
                             recognised and answered once mapped)"
                    .to_string(),
                location: None,
            }),
        ),
    };
    let ack = build_ack(Some(message), code, control_id, timestamp, error.as_ref());
    (code, Bytes::from(ack))
}

/// The task that sends application ACKs as they fall due.
pub struct ApplicationAcks {
    pub store: SharedStore,
    pub endpoints: Vec<ApplicationAckEndpoint>,
    pub explained_targets: ExplainedTargets,
    pub metrics: Metrics,
    pub poll_interval: Duration,
}

impl ApplicationAcks {
    /// Sends what is owed until `shutdown` completes.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        // Sends a stop cut short are owed again (sent twice at worst).
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || application_acks::give_back_all(store.as_ref()))
            .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(given)) => tracing::info!(
                acknowledgements = given,
                "application acknowledgements cut short by a stop will be sent again"
            ),
            _ => tracing::error!("application acknowledgements being sent could not be given back"),
        }
        let mut failing: HashMap<String, (Instant, Duration)> = HashMap::new();
        let mut counter: u64 = 0;
        loop {
            self.round(&mut failing, &mut counter).await;
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }

    /// One pass over every owed acknowledgement; endpoints that failed
    /// are skipped until their back-off ends.
    async fn round(&self, failing: &mut HashMap<String, (Instant, Duration)>, counter: &mut u64) {
        let mut after = 0;
        loop {
            let store = self.store.clone();
            let page = tokio::task::spawn_blocking(move || {
                application_acks::owed(store.as_ref(), after, PAGE)
            })
            .await;
            let page = match page {
                Ok(Ok(page)) => page,
                Ok(Err(error)) => {
                    tracing::error!(error = %error, "owed application acknowledgements unreadable");
                    return;
                }
                Err(_) => return,
            };
            let Some(last) = page.last().map(|owed| owed.journal_id) else {
                return;
            };
            for owed in page {
                self.settle(owed, failing, counter).await;
            }
            after = last;
        }
    }

    async fn settle(
        &self,
        owed: application_acks::OwedAck,
        failing: &mut HashMap<String, (Instant, Duration)>,
        counter: &mut u64,
    ) {
        let (code, error) = outcome_ack(&owed.outcome, true, &self.explained_targets);
        let reception =
            (owed.condition == ZAM).then(|| dmp_reception(&owed.outcome, &self.explained_targets));
        if owed.condition == ZAM && reception.as_ref().is_some_and(Option::is_none) {
            // Nothing went to the DMP (no route to a dmp target).
            self.record(owed.journal_id, NOT_WANTED, code, None).await;
            return;
        }
        let condition = AckCondition::from_field(&owed.condition);
        let endpoint = application_ack_endpoint(
            &self.endpoints,
            &owed.sending_application,
            &owed.sending_facility,
        );
        // A condition that does not ask for this one, or a sender whose
        // endpoint the configuration no longer names, is settled unsent.
        let Some((endpoint, kind)) = endpoint
            .and_then(|endpoint| Some((endpoint, endpoint.kind()?)))
            .filter(|_| owed.condition == ZAM || condition.wants(code == AckCode::AA))
        else {
            self.record(owed.journal_id, NOT_WANTED, code, None).await;
            return;
        };
        let address = endpoint.endpoint.as_str();
        if failing
            .get(address)
            .is_some_and(|(retry_at, _)| Instant::now() < *retry_at)
        {
            return;
        }
        let Ok(message) = Message::parse(&owed.raw) else {
            // It was read at intake; unreadable now would be a bug.
            self.record(owed.journal_id, NOT_WANTED, code, None).await;
            return;
        };
        *counter += 1;
        let control_id = format!(
            "PSA{:08X}{:09}",
            owed.journal_id as u32,
            *counter % 1_000_000_000
        );
        let ack = match reception.flatten() {
            Some(reception) => hl7v2::zam::build_zam_z01(
                &message,
                &reception,
                &control_id,
                &crate::acks::hl7_timestamp_now(),
            ),
            None => build_ack(
                Some(&message),
                code,
                &control_id,
                &crate::acks::hl7_timestamp_now(),
                error.as_ref(),
            ),
        };
        // Taken first: another instance on the same PostgreSQL may have it.
        let (store, condition) = (self.store.clone(), owed.condition.clone());
        let journal_id = owed.journal_id;
        let taken = tokio::task::spawn_blocking(move || {
            application_acks::take(store.as_ref(), journal_id, &condition)
        })
        .await;
        if !matches!(taken, Ok(Ok(true))) {
            return;
        }
        let sent = match kind {
            AckEndpointKind::Mllp(address) => send_mllp(address, &ack).await,
            AckEndpointKind::Http(url) => passerelle_fhir_client::post_document(
                url,
                Bytes::from(ack),
                "x-application/hl7-v2+er7",
                endpoint.ca_file.as_deref(),
                SEND_TIMEOUT,
            )
            .await
            .map_err(|error| error.to_string()),
        };
        match sent {
            Ok(()) => {
                failing.remove(address);
                self.record(owed.journal_id, SENT, code, None).await;
            }
            Err(why) => {
                let (store, condition) = (self.store.clone(), owed.condition.clone());
                let given = tokio::task::spawn_blocking(move || {
                    application_acks::give_back(store.as_ref(), journal_id, &condition)
                })
                .await;
                if !matches!(given, Ok(Ok(()))) {
                    tracing::error!(journal_id, "application acknowledgement not given back");
                }
                let backoff = failing
                    .get(address)
                    .map_or(Duration::from_secs(1), |(_, last)| {
                        (*last * 2).min(MAX_BACKOFF)
                    });
                failing.insert(address.to_string(), (Instant::now() + backoff, backoff));
                ApplicationAckSettled {
                    journal_id: owed.journal_id,
                    result: "failed",
                    ack_code: code.as_str(),
                    error: Some(&why),
                }
                .emit(&self.metrics);
            }
        }
    }

    async fn record(
        &self,
        journal_id: i64,
        state: &'static str,
        code: AckCode,
        error: Option<&str>,
    ) {
        let store = self.store.clone();
        let settled = tokio::task::spawn_blocking(move || {
            application_acks::settle(store.as_ref(), journal_id, state)
        })
        .await;
        if !matches!(settled, Ok(Ok(()))) {
            tracing::error!(journal_id, "application acknowledgement state not recorded");
            return;
        }
        ApplicationAckSettled {
            journal_id,
            result: if state == SENT { "sent" } else { "not_wanted" },
            ack_code: code.as_str(),
            error,
        }
        .emit(&self.metrics);
    }
}

/// Sends one framed message and waits for the endpoint's answer frame
/// (whatever it says: it took the message).
async fn send_mllp(address: &str, message: &[u8]) -> Result<(), String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let mut frame = Vec::with_capacity(message.len() + 3);
        frame.push(0x0B);
        frame.extend_from_slice(message);
        frame.extend_from_slice(&[0x1C, 0x0D]);
        stream
            .write_all(&frame)
            .await
            .map_err(|e| format!("cannot send: {e}"))?;
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        while !answer.windows(2).any(|w| w == [0x1C, 0x0D]) {
            let read = stream
                .read(&mut buffer)
                .await
                .map_err(|e| format!("no answer: {e}"))?;
            if read == 0 {
                return Err("closed without an answer".to_string());
            }
            // An answer is short; a peer that streams is cut off.
            if answer.len() > 1 << 20 {
                return Err("answer over 1 MiB".to_string());
            }
            answer.extend_from_slice(&buffer[..read]);
        }
        Ok(())
    };
    tokio::time::timeout(SEND_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {} s", SEND_TIMEOUT.as_secs()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use passerelle_storage::application_acks::DeliveryOutcome;

    #[test]
    fn mapping_errors_become_errs_naming_segment_and_field() {
        let (code, error) = outcome_ack(
            &Outcome::MappingFailed("route `lab`: OBX(3)-5: `positif` is not a number".into()),
            true,
            &[],
        );
        assert_eq!(code, AckCode::AE);
        let error = error.unwrap();
        assert_eq!(error.code, 207);
        assert_eq!(
            error.location,
            Some(ErrorLocation {
                segment: "OBX".into(),
                sequence: 3,
                field: 5
            })
        );
        assert_eq!(error.diagnostic, "not mapped: `positif` is not a number");
        let (code, error) = outcome_ack(
            &Outcome::MappingFailed("route `default`: no mapper handles REF^I14".into()),
            true,
            &[],
        );
        assert_eq!(code, AckCode::AR);
        assert_eq!(error.unwrap().code, 200);
        let (_, error) = outcome_ack(&Outcome::MappingFailed("PID-3: missing".into()), true, &[]);
        assert_eq!(error.unwrap().location.unwrap().segment, "PID");
    }

    /// A message the mapping stage does not map within the configured time
    /// is answered AE (kept, will be mapped), after that time and not
    /// before.
    #[tokio::test]
    async fn an_after_mapping_wait_ends_at_its_timeout_with_ae() {
        use passerelle_storage::Store;
        let dir = tempfile::tempdir().unwrap();
        let store = passerelle_storage::sqlite::SqliteStore::open(dir.path()).unwrap();
        let raw = b"MSH|^~\\&|LAB|SITE|GW|GW|20261204||ORU^R01|T1|P|2.5\rPID|1\r".to_vec();
        let entry = passerelle_storage::JournalEntry {
            received_at: "2026-12-04T10:00:00Z".into(),
            transport: "mllp",
            sending_application: "LAB".into(),
            sending_facility: "SITE".into(),
            control_id: "T1".into(),
            message_type: "ORU^R01".into(),
            version: "2.5".into(),
            charset: "UNICODE UTF-8".into(),
            sha256: "t1".into(),
            ack_code: "AA".into(),
            raw: raw.clone(),
            networks: Vec::new(),
            application_ack: String::new(),
        };
        let passerelle_storage::Stored::New { id } = store.journal_commit(&[entry]).unwrap()[0]
        else {
            panic!("stored anew")
        };
        let settings = AckSettings {
            after_mapping_timeout: Duration::from_millis(150),
            store: Some(std::sync::Arc::new(store)),
            ..AckSettings::default()
        };
        let started = Instant::now();
        let outcome = settings.mapping_outcome(id).await;
        assert!(outcome.is_none(), "nothing maps it here");
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(2));
        let message = Message::parse(&raw).unwrap();
        let (code, ack) = after_mapping_ack(&message, None, "A1", "20261204");
        assert_eq!(code, AckCode::AE);
        let ack = String::from_utf8_lossy(&ack);
        assert!(ack.contains("MSA|AE|T1"), "{ack}");
        assert!(
            ack.contains("207^Application internal error") && ack.contains("not mapped in time"),
            "{ack}"
        );
    }

    #[test]
    fn dead_deliveries_count_for_the_application_ack_only() {
        let outcome = Outcome::Routed(vec![
            DeliveryOutcome {
                target: "local".into(),
                state: "delivered".into(),
                last_status: None,
                last_error: None,
                reason: Default::default(),
            },
            DeliveryOutcome {
                target: "hospital".into(),
                state: "dead".into(),
                last_status: Some(412),
                last_error: Some("{\"resourceType\": \"OperationOutcome\"}".into()),
                reason: Default::default(),
            },
        ]);
        let (code, error) = outcome_ack(&outcome, true, &[]);
        assert_eq!(code, AckCode::AE);
        assert!(error.unwrap().diagnostic.contains("`hospital` (HTTP 412)"));
        assert_eq!(outcome_ack(&outcome, false, &[]).0, AckCode::AA);
        assert_eq!(outcome_ack(&Outcome::Unrouted, true, &[]).0, AckCode::AA);
    }

    #[test]
    fn explained_refusals_reach_the_sender_with_the_field_they_name() {
        let refusal = "not sent to the DMP: the patient's identity status is VALI (PID-32); the DMP is fed only for QUAL";
        let outcome = Outcome::Routed(vec![DeliveryOutcome {
            target: "dmp".into(),
            state: "dead".into(),
            last_status: None,
            last_error: Some(refusal.into()),
            reason: passerelle_storage::AttemptReason {
                code: Some("PASSERELLE".into()),
                location: Some("PID-32".into()),
            },
        }]);
        let (code, error) = outcome_ack(&outcome, true, &["dmp".to_string()]);
        assert_eq!(code, AckCode::AE);
        let error = error.unwrap();
        assert_eq!(error.diagnostic, refusal);
        assert_eq!(
            error.location,
            Some(ErrorLocation {
                segment: "PID".into(),
                sequence: 1,
                field: 32
            })
        );
        // A target not listed keeps its answer to itself.
        let (_, error) = outcome_ack(&outcome, true, &[]);
        assert!(!error.unwrap().diagnostic.contains("VALI"));
    }
}
