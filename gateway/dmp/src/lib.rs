//! The DMP connector and the DMP simulator.
//!
//! The connector ([`DmpConnector`]) feeds the French national shared
//! record the way it is fed in production: each CDA document of a mapped
//! Bundle becomes an IHE XDS.b ITI-41 "Provide and Register Document
//! Set-b" request (SOAP 1.2, MTOM/XOP, ebRIM metadata built from the CDA
//! header and the message), sent over the target's HTTPS client (mutual
//! TLS with the structure's certificate). The national rules are checked
//! before anything leaves ([`document`], [`refusal`]): a qualified INS,
//! required metadata, value sets, size. What the DMP answers is
//! classified once here ([`Outcome`]): accepted, refused (a dead letter
//! with the DMP's codes and text), or unavailable (retried).
//!
//! The simulator ([`simulator`]) is the receiving side, for tests and for
//! a site trying Passerelle before its DMP homologation: it validates
//! what the DMP validates (MTOM, metadata, INS, hashes, duplicates, value
//! sets, the CDA, the VIHF and the signed submission set), stores
//! documents in memory, lists them at `GET /simulator/documents`, answers
//! TD0.2, ITI-18, ITI-43, ITI-62 and ITI-65/67, and can be told to fail.
//!
//! Beside the ITI-41 request: the VIHF ([`vihf`]), the submission set's
//! signature ([`signature`]), TD0.2 ([`td02`]), replacements (ITI-18 then
//! RPLC), deletions (ITI-62), and the `mhd` mode ([`mhd`]).

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod checker;
pub mod codes;
pub mod document;
mod dsig;
pub mod mhd;
pub mod presentation;
pub mod refusal;
pub mod signature;
pub mod simulator;
pub mod td02;
pub mod time;
pub mod value_sets;
pub mod vihf;

use std::time::Duration;

use bytes::Bytes;

use passerelle_config::{DmpTarget, TargetConfig};
use passerelle_fhir_client::{SendError, TargetClient};
use xds::mtom::{content_id, package, Part};
use xds::response::Answer;
use xds::{provide_and_register, Addressing, ACTION_ITI41};

pub use document::SubmissionKey;
pub use refusal::Refusal;
pub use value_sets::ValueSets;
// The wire format, for callers that speak to the DMP or its simulator.
pub use xds;

/// The code of a refusal by a rule Passerelle checked before sending (the
/// DMP's own refusals carry the DMP's codes), as the sender's
/// acknowledgement gives it.
pub const PASSERELLE_CODE: &str = "PASSERELLE";

/// The `Accept` of an ITI-41 request: the DMP answers SOAP, plain or as
/// an MTOM package.
const ACCEPT: &str = "multipart/related, application/soap+xml";

/// Why a `dmp` target cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DmpSetupError {
    #[error("a dmp target needs its dmp table")]
    NoSettings,
    #[error("{0}")]
    Client(#[from] SendError),
    #[error("value sets: {0}")]
    ValueSets(#[from] value_sets::ValueSetError),
    #[error("VIHF: {0}")]
    Vihf(#[from] vihf::VihfError),
}

/// What one submission came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The DMP took every document of the message (and removed those it
    /// deletes).
    Accepted {
        status: u16,
        documents: usize,
        deleted: usize,
    },
    /// The message holds no CDA document: nothing is sent.
    NothingToSend,
    /// A rule checked before sending refused the message; nothing was
    /// sent. Never retried.
    Refused(Refusal),
    /// The DMP refused the submission (its codes and texts). Never
    /// retried.
    Rejected {
        status: u16,
        /// The DMP's error code (its first registry error, or its SOAP
        /// fault's code), when it gave one.
        code: Option<String>,
        detail: String,
    },
    /// No usable answer (connection, timeout, 5xx, a fault of the
    /// receiver): retried.
    Unavailable {
        status: Option<u16>,
        detail: String,
        retry_after: Option<Duration>,
    },
}

/// The connector of one `dmp` target.
pub struct DmpConnector {
    client: TargetClient,
    settings: DmpTarget,
    value_sets: ValueSets,
    signer: Option<vihf::VihfSigner>,
    /// Patients TD0.2 found with an active DMP this structure may feed.
    fed_patients: std::sync::Mutex<FedPatients>,
    /// Our clock against the DMP's (the CNDA checks it is synchronised).
    clock: ClockWatch,
}

/// How far our clock may be from the DMP's before the operator is told:
/// times sent (submission, creation, the VIHF's issue instant) are ours.
const CLOCK_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(60);
/// At most one clock warning per this long.
const CLOCK_WARNING_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Compares our clock with the `Date` of the DMP's answers, and warns
/// (rate-limited) when they differ by more than [`CLOCK_TOLERANCE`]: the
/// CNDA requires a synchronised clock, and a site learns of a drifting
/// one from its log rather than from refused VIHFs.
#[derive(Debug, Default)]
struct ClockWatch {
    last_warning: std::sync::Mutex<Option<std::time::SystemTime>>,
}

impl ClockWatch {
    /// How far `ours` is from `theirs` when past the tolerance (an HTTP
    /// date has whole seconds).
    fn skew(theirs: std::time::SystemTime, ours: std::time::SystemTime) -> Option<(bool, u64)> {
        let (ahead, by) = match ours.duration_since(theirs) {
            Ok(by) => (true, by),
            Err(behind) => (false, behind.duration()),
        };
        (by > CLOCK_TOLERANCE).then_some((ahead, by.as_secs()))
    }

    /// Warns when the clocks differ too much, at most once per
    /// [`CLOCK_WARNING_EVERY`]; whether it warned.
    fn compare(&self, theirs: std::time::SystemTime, ours: std::time::SystemTime) -> bool {
        let Some((ahead, seconds)) = Self::skew(theirs, ours) else {
            return false;
        };
        let Ok(mut last) = self.last_warning.lock() else {
            return false;
        };
        if last.is_some_and(|at| ours.duration_since(at).unwrap_or_default() < CLOCK_WARNING_EVERY)
        {
            return false;
        }
        *last = Some(ours);
        tracing::warn!(
            seconds,
            direction = if ahead { "ahead of" } else { "behind" },
            "this host's clock is {seconds} s {} the DMP's: synchronise it (NTP); the CNDA requires it and the times sent are this host's",
            if ahead { "ahead of" } else { "behind" }
        );
        true
    }
}

/// How long a TD0.2 "active, feeding authorized" answer is trusted.
const TD02_CACHE_MS: i64 = 3_600_000;
/// Patients remembered at most.
const TD02_CACHE_ENTRIES: usize = 100_000;

/// The patients TD0.2 said may be fed, and when (ms): asked again after
/// [`TD02_CACHE_MS`]. Bounded: when full, stale answers go first, then
/// all (the next message of each patient asks TD0.2 again).
#[derive(Debug)]
struct FedPatients {
    answered_at: std::collections::HashMap<String, i64>,
    capacity: usize,
}

impl FedPatients {
    fn new(capacity: usize) -> FedPatients {
        FedPatients {
            answered_at: Default::default(),
            capacity,
        }
    }

    fn is_fresh(&self, patient: &str, now_ms: i64) -> bool {
        self.answered_at
            .get(patient)
            .is_some_and(|at| now_ms - at < TD02_CACHE_MS)
    }

    fn remember(&mut self, patient: &str, now_ms: i64) {
        if self.answered_at.len() >= self.capacity && !self.answered_at.contains_key(patient) {
            self.answered_at
                .retain(|_, at| now_ms - *at < TD02_CACHE_MS);
            if self.answered_at.len() >= self.capacity {
                self.answered_at.clear();
            }
        }
        self.answered_at.insert(patient.to_string(), now_ms);
    }
}

impl DmpConnector {
    pub fn new(target: &TargetConfig) -> Result<DmpConnector, DmpSetupError> {
        let settings = target.dmp.clone().ok_or(DmpSetupError::NoSettings)?;
        let value_sets = match &settings.value_sets_dir {
            Some(dir) => ValueSets::load(dir)?,
            None => ValueSets::none(),
        };
        let signer = match &settings.vihf {
            Some(vihf) => Some(vihf::VihfSigner::load(vihf)?),
            None => None,
        };
        Ok(DmpConnector {
            client: TargetClient::new(target)?,
            settings,
            value_sets,
            signer,
            fed_patients: std::sync::Mutex::new(FedPatients::new(TD02_CACHE_ENTRIES)),
            clock: ClockWatch::default(),
        })
    }

    /// The metadata attributes whose codes are checked, with their files.
    pub fn value_sets(&self) -> &ValueSets {
        &self.value_sets
    }

    /// The addressing of one request of an attempt (`purpose` tells the
    /// requests of one attempt apart).
    fn addressing(
        &self,
        key: SubmissionKey<'_>,
        attempt: u32,
        now_ms: i64,
        purpose: &str,
    ) -> Addressing {
        Addressing {
            to: self.client.url().to_string(),
            message_id: codes::uuid_urn(&[
                &key.outbox_id.to_be_bytes(),
                &attempt.to_be_bytes(),
                &now_ms.to_be_bytes(),
                purpose.as_bytes(),
            ]),
        }
    }

    /// The WS-Security header of a request for `patient`: a signed VIHF
    /// when the target has one configured.
    fn security(
        &self,
        patient: &str,
        addressing: &Addressing,
        now_ms: i64,
    ) -> Result<Option<String>, Outcome> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let subject = vihf::Subject {
            structure_id: &self.settings.structure_id,
            lps_name: &self.settings.lps_name,
            lps_version: &self.settings.lps_version,
            lps_homologation: &self.settings.lps_homologation,
            ins: patient,
        };
        let id = format!("_{}", addressing.message_id.trim_start_matches("urn:uuid:"));
        signer
            .security_header(&subject, &id, now_ms)
            .map(Some)
            .map_err(|error| Outcome::Unavailable {
                status: None,
                detail: error.to_string(),
                retry_after: None,
            })
    }

    /// Submits the CDA documents of `key.bundle`; `attempt` counts from 1.
    pub async fn submit(&self, key: SubmissionKey<'_>, attempt: u32, now_ms: i64) -> Outcome {
        let prepared =
            match document::prepare(key.bundle, &self.settings, &self.value_sets, key, now_ms) {
                Ok(Some(prepared)) => prepared,
                Ok(None) => return Outcome::NothingToSend,
                Err(refusal) => return Outcome::Refused(refusal),
            };
        // The CNDA's rule: each CDA passes the ANS schema and its model's
        // schematron before it is sent.
        if let Some(checker) = &self.settings.cda_checker {
            for bytes in &prepared.documents {
                let (checker, bytes) = (checker.clone(), bytes.clone());
                let checked =
                    tokio::task::spawn_blocking(move || checker::check_cda(&checker, &bytes)).await;
                match checked {
                    Ok(Ok(())) => {}
                    Ok(Err(why)) => return Outcome::Refused(Refusal::CdaNotConformant(why)),
                    Err(_) => {
                        return Outcome::Unavailable {
                            status: None,
                            detail: "the CDA checker did not run".into(),
                            retry_after: None,
                        }
                    }
                }
            }
        }
        if self.settings.mode == passerelle_config::DmpMode::Mhd {
            return self.submit_mhd(prepared).await;
        }
        let mut prepared = prepared;
        let patient = prepared.submission.set.patient_id.clone();
        if let Err(outcome) = self.check_patient(&patient, key, attempt, now_ms).await {
            return outcome;
        }
        // A replacement names the entryUUID of the document it replaces:
        // the registry gives it (ITI-18 GetDocuments by uniqueId).
        let mut associations = Vec::new();
        for (index, (entry_id, replaced)) in prepared.replaces.iter().enumerate() {
            let purpose = format!("replace{index}");
            let target = match self
                .approved_entry(replaced, &patient, key, attempt, now_ms, &purpose)
                .await
            {
                Ok(Some(target)) => target,
                Ok(None) => return Outcome::Refused(Refusal::ReplacedNotFound(replaced.clone())),
                Err(outcome) => return outcome,
            };
            associations.push(xds::Association {
                id: format!("rplc{:02}", index + 1),
                kind: xds::ASSOCIATION_RPLC.to_string(),
                source: entry_id.clone(),
                target,
            });
        }
        prepared.submission.associations.extend(associations);
        // A deletion (OBX-11 D) removes the entry of the document it
        // carries (ITI-62, IHE RMD), found the same way.
        let mut doomed = Vec::new();
        for (index, deleted) in prepared.deletions.iter().enumerate() {
            let purpose = format!("delete{index}");
            match self
                .approved_entry(deleted, &patient, key, attempt, now_ms, &purpose)
                .await
            {
                Ok(Some(entry)) => doomed.push(entry),
                // Deleted by an earlier attempt whose answer was lost: on
                // a repeat there is nothing left to delete.
                Ok(None) if attempt > 1 => {}
                Ok(None) => return Outcome::Refused(Refusal::DeletedNotFound(deleted.clone())),
                Err(outcome) => return outcome,
            }
        }
        let mut last_status = 200;
        if !doomed.is_empty() {
            let addressing = self.addressing(key, attempt, now_ms, "deletion");
            let security = match self.security(&patient, &addressing, now_ms) {
                Ok(security) => security,
                Err(outcome) => return outcome,
            };
            let request = xds::query::write_delete(&doomed, &addressing, security.as_deref());
            let content_type = "application/soap+xml; charset=UTF-8";
            match self.exchange(request.into_bytes(), content_type).await {
                Ok((status, Answer::Success)) => last_status = status,
                Ok((status, answer)) => return classify(status, answer, attempt, 0, 0),
                Err(outcome) => return outcome,
            }
        }
        let deleted = doomed.len();
        if prepared.submission.documents.is_empty() {
            return Outcome::Accepted {
                status: last_status,
                documents: 0,
                deleted,
            };
        }
        let documents = prepared.documents.len();
        if let Some(signer) = &self.signer {
            if let Err(outcome) = sign_submission(signer, &mut prepared, now_ms) {
                return outcome;
            }
        }
        let addressing = self.addressing(key, attempt, now_ms, "submission");
        let security = match self.security(&patient, &addressing, now_ms) {
            Ok(security) => security,
            Err(outcome) => return outcome,
        };
        let envelope = provide_and_register(&prepared.submission, &addressing, security.as_deref());
        let parts: Vec<Part> = prepared
            .submission
            .documents
            .iter()
            .zip(prepared.documents)
            .map(|(entry, bytes)| Part {
                content_id: content_id(&entry.id),
                content_type: entry.mime_type.clone(),
                bytes,
            })
            .collect();
        let request = package(&envelope, &parts, ACTION_ITI41);
        match self.exchange(request.body, &request.content_type).await {
            Ok((status, answer)) => classify(status, answer, attempt, documents, deleted),
            Err(outcome) => outcome,
        }
    }

    /// `mode = "mhd"`: the submission as an ITI-65 Bundle POSTed to the
    /// target's FHIR base; a replacement names the DocumentReference ITI-67
    /// finds. Deletions have no ITI-65 form.
    async fn submit_mhd(&self, prepared: document::Prepared) -> Outcome {
        if !prepared.deletions.is_empty() {
            return Outcome::Refused(Refusal::NotInMhd("a deletion (OBX-11 D)"));
        }
        let mut replaced = Vec::new();
        for (entry_id, unique_id) in &prepared.replaces {
            let answer = match self.client.get(&mhd::search_by_unique_id(unique_id)).await {
                Ok(answer) => answer,
                Err(error) => {
                    return Outcome::Unavailable {
                        status: None,
                        detail: format!("ITI-67: {error}"),
                        retry_after: None,
                    }
                }
            };
            if !(200..300).contains(&answer.status) {
                return mhd_failure(&answer, "ITI-67");
            }
            let found = serde_json::from_slice(&answer.body)
                .map(|bundle| mhd::found_ids(&bundle))
                .unwrap_or_default();
            match found.into_iter().next() {
                Some(id) => replaced.push((entry_id.clone(), id)),
                None => return Outcome::Refused(Refusal::ReplacedNotFound(unique_id.clone())),
            }
        }
        let bundle = mhd::provide_bundle(&prepared.submission, &prepared.documents, &replaced);
        let documents = prepared.documents.len();
        let answer = match self
            .client
            .post(
                "application/fhir+json",
                "application/fhir+json",
                Bytes::from(bundle.to_string()),
            )
            .await
        {
            Ok(answer) => answer,
            Err(error) => {
                return Outcome::Unavailable {
                    status: None,
                    detail: format!("ITI-65: {error}"),
                    retry_after: None,
                }
            }
        };
        if let Some(date) = answer.date {
            self.clock.compare(date, std::time::SystemTime::now());
        }
        if (200..300).contains(&answer.status) {
            Outcome::Accepted {
                status: answer.status,
                documents,
                deleted: 0,
            }
        } else {
            mhd_failure(&answer, "ITI-65")
        }
    }

    /// TD0.2 before the first feed of a patient: an active DMP this
    /// structure may feed, else a refusal (cached while positive).
    async fn check_patient(
        &self,
        patient: &str,
        key: SubmissionKey<'_>,
        attempt: u32,
        now_ms: i64,
    ) -> Result<(), Outcome> {
        let cached = self
            .fed_patients
            .lock()
            .map(|c| c.is_fresh(patient, now_ms))
            .unwrap_or(false);
        if cached {
            return Ok(());
        }
        let addressing = self.addressing(key, attempt, now_ms, "td0.2");
        let security = self.security(patient, &addressing, now_ms)?;
        let request = td02::write_request(patient, &addressing, security.as_deref());
        let answer = self.post_soap(request, "TD0.2").await?;
        let sender_fault = || {
            let content_type = answer
                .content_type
                .as_deref()
                .unwrap_or("application/soap+xml");
            matches!(
                xds::response::read(content_type, &answer.body),
                Ok(Answer::Fault { ref code, .. }) if code.ends_with("Sender")
            )
        };
        let status = match td02::read_answer(&answer.body) {
            Some(status) if (200..300).contains(&answer.status) => status,
            _ if sender_fault() => {
                let detail = content_summary(&answer);
                return Err(Outcome::Rejected {
                    code: None,
                    status: answer.status,
                    detail: format!("TD0.2: the DMP refused the request: {detail}"),
                });
            }
            _ if answer.status >= 500 || answer.status == 429 || answer.status == 408 => {
                return Err(Outcome::Unavailable {
                    status: Some(answer.status),
                    detail: format!("TD0.2: the DMP answered {}", answer.status),
                    retry_after: answer.retry_after,
                })
            }
            _ => {
                let detail = content_summary(&answer);
                return Err(Outcome::Rejected {
                    code: None,
                    status: answer.status,
                    detail: format!("TD0.2: the DMP answered {}: {detail}", answer.status),
                });
            }
        };
        match status {
            td02::PatientStatus {
                state: td02::DmpState::Active,
                feeding_authorized: true,
            } => {
                if let Ok(mut cache) = self.fed_patients.lock() {
                    cache.remember(patient, now_ms);
                }
                Ok(())
            }
            td02::PatientStatus {
                state: td02::DmpState::Active,
                feeding_authorized: false,
            } => Err(Outcome::Refused(Refusal::FeedingNotAuthorized)),
            td02::PatientStatus { state, .. } => {
                Err(Outcome::Refused(Refusal::NoActiveDmp(state.as_str())))
            }
        }
    }

    /// POSTs a plain SOAP 1.2 request; no answer is `Err` with the
    /// outcome to record (`what` names the transaction in it).
    async fn post_soap(
        &self,
        request: String,
        what: &str,
    ) -> Result<passerelle_fhir_client::TargetAnswer, Outcome> {
        self.post(
            "application/soap+xml; charset=UTF-8",
            request.into_bytes(),
            &format!("{what}: "),
        )
        .await
    }

    /// POSTs one request to the DMP; no answer is `Err` with the outcome
    /// to record (`what` prefixes its detail). Each answer's clock is
    /// compared with ours.
    async fn post(
        &self,
        content_type: &str,
        body: Vec<u8>,
        what: &str,
    ) -> Result<passerelle_fhir_client::TargetAnswer, Outcome> {
        let answer = self
            .client
            .post(content_type, ACCEPT, Bytes::from(body))
            .await
            .map_err(|error| Outcome::Unavailable {
                status: None,
                detail: format!("{what}{error}"),
                retry_after: None,
            })?;
        if let Some(date) = answer.date {
            self.clock.compare(date, std::time::SystemTime::now());
        }
        Ok(answer)
    }

    /// Sends one SOAP request and reads the answer as a registry answer;
    /// no usable answer is `Err` with the outcome to record.
    async fn exchange(&self, body: Vec<u8>, content_type: &str) -> Result<(u16, Answer), Outcome> {
        let answer = self.post(content_type, body, "").await?;
        let status = answer.status;
        let content_type = answer
            .content_type
            .as_deref()
            .unwrap_or("application/soap+xml");
        match xds::response::read(content_type, &answer.body) {
            // A receiver's fault or a 5xx waits for the DMP to be back.
            Ok(Answer::Fault { code, reason })
                if code.ends_with("Receiver") || status >= 500 && !code.ends_with("Sender") =>
            {
                Err(Outcome::Unavailable {
                    status: Some(status),
                    detail: format!("DMP answered {status}: SOAP fault {code}: {reason}"),
                    retry_after: answer.retry_after,
                })
            }
            Ok(read) => Ok((status, read)),
            Err(error) if status >= 500 || status == 429 || status == 408 => {
                Err(Outcome::Unavailable {
                    status: Some(status),
                    detail: format!("DMP answered {status}: {error}"),
                    retry_after: answer.retry_after,
                })
            }
            Err(error) => Err(Outcome::Rejected {
                code: None,
                status,
                detail: format!("DMP answered {status} with no readable SOAP answer: {error}"),
            }),
        }
    }

    /// The entryUUID of the approved document `unique_id` of `patient`
    /// (ITI-18 GetDocuments); `Ok(None)` when the registry has none.
    async fn approved_entry(
        &self,
        unique_id: &str,
        patient: &str,
        key: SubmissionKey<'_>,
        attempt: u32,
        now_ms: i64,
        purpose: &str,
    ) -> Result<Option<String>, Outcome> {
        let addressing = self.addressing(key, attempt, now_ms, purpose);
        let security = self.security(patient, &addressing, now_ms)?;
        let query = xds::query::StoredQuery::GetDocuments {
            unique_ids: vec![unique_id.to_string()],
        };
        let request = xds::query::write_query(&query, &addressing, security.as_deref());
        let answer = self.post_soap(request, "ITI-18").await?;
        let content_type = answer
            .content_type
            .as_deref()
            .unwrap_or("application/soap+xml");
        let found = match xds::query::read_query_response(content_type, &answer.body) {
            Ok(Ok(found)) if (200..300).contains(&answer.status) => found,
            Ok(Err(errors)) if (200..300).contains(&answer.status) => {
                return Err(Outcome::Rejected {
                    code: None,
                    status: answer.status,
                    detail: format!("DMP refused the ITI-18 query: {errors}"),
                })
            }
            _ => {
                return Err(Outcome::Unavailable {
                    status: Some(answer.status),
                    detail: format!("ITI-18: the DMP answered {}", answer.status),
                    retry_after: answer.retry_after,
                })
            }
        };
        Ok(found
            .into_iter()
            .find(|f| {
                f.status == xds::query::STATUS_APPROVED
                    && f.entry.unique_id == unique_id
                    && f.entry.patient_id == patient
            })
            .map(|f| f.entry.id))
    }
}

/// What the DMP answered to a change (ITI-41, ITI-62), as an outcome: a
/// Success is accepted; a Failure is a dead letter with the DMP's codes,
/// unless it is the duplicate a repeat after a lost answer meets; a fault
/// of the sender is a dead letter. (No answer, a 5xx and a fault of the
/// receiver never get here: [`DmpConnector::exchange`] retries them.)
fn classify(
    status: u16,
    answer: Answer,
    attempt: u32,
    documents: usize,
    deleted: usize,
) -> Outcome {
    match answer {
        Answer::Success if (200..300).contains(&status) => Outcome::Accepted {
            status,
            documents,
            deleted,
        },
        Answer::Success => Outcome::Unavailable {
            status: Some(status),
            detail: format!("DMP answered {status} with a Success"),
            retry_after: None,
        },
        Answer::Failure(errors) => {
            // A repeat whose first answer was lost: the DMP already holds
            // this very submission set.
            let repeat = attempt > 1
                && !errors.is_empty()
                && errors
                    .iter()
                    .all(|e| e.code == "XDSDuplicateUniqueIdInRegistry");
            if repeat {
                Outcome::Accepted {
                    status,
                    documents,
                    deleted,
                }
            } else {
                Outcome::Rejected {
                    code: errors.first().map(|e| e.code.clone()),
                    status,
                    detail: format!("DMP refused: {}", Answer::Failure(errors).summary()),
                }
            }
        }
        Answer::Fault { code, reason } => Outcome::Rejected {
            detail: format!("DMP SOAP fault {code}: {reason}"),
            code: Some(code),
            status,
        },
    }
}

/// Adds the signature document of the submission set (IHE DSG, signed
/// with the seal certificate) to `prepared`: an entry, its bytes and the
/// `signs` association to the set. Its uniqueId derives from the set's,
/// so a retry sends the same one.
fn sign_submission(
    signer: &vihf::VihfSigner,
    prepared: &mut document::Prepared,
    now_ms: i64,
) -> Result<(), Outcome> {
    let submission = &prepared.submission;
    let (Some(first), Some(structure)) =
        (submission.documents.first(), submission.set.authors.first())
    else {
        return Ok(());
    };
    let signed: Vec<signature::Signed<'_>> = submission
        .documents
        .iter()
        .zip(&prepared.documents)
        .map(|(entry, bytes)| signature::Signed {
            unique_id: &entry.unique_id,
            bytes,
        })
        .collect();
    let bytes =
        signature::sign(signer, &submission.set.unique_id, &signed, now_ms).map_err(|error| {
            Outcome::Unavailable {
                status: None,
                detail: format!("signing the submission set: {error}"),
                retry_after: None,
            }
        })?;
    let unique_id = codes::uuid_oid(&[submission.set.unique_id.as_bytes(), b"signature"]);
    let entry = signature::entry(
        first,
        structure,
        unique_id,
        &bytes,
        &submission.set.submission_time,
    );
    let association = xds::Association {
        id: "signs01".into(),
        kind: xds::ASSOCIATION_SIGNS.to_string(),
        source: entry.id.clone(),
        target: submission.set.id.clone(),
    };
    prepared.submission.documents.push(entry);
    prepared.submission.associations.push(association);
    prepared.documents.push(bytes);
    Ok(())
}

/// A SOAP answer's fault or registry errors, for a refusal's text.
fn content_summary(answer: &passerelle_fhir_client::TargetAnswer) -> String {
    let content_type = answer
        .content_type
        .as_deref()
        .unwrap_or("application/soap+xml");
    match xds::response::read(content_type, &answer.body) {
        Ok(read) => read.summary(),
        Err(error) => error.to_string(),
    }
}

/// A FHIR answer that is not a 2xx: retried when the server is away or
/// busy, else a dead letter with its OperationOutcome's diagnostics.
fn mhd_failure(answer: &passerelle_fhir_client::TargetAnswer, transaction: &str) -> Outcome {
    let status = answer.status;
    if status >= 500 || status == 429 || status == 408 {
        Outcome::Unavailable {
            status: Some(status),
            detail: format!("{transaction}: the DMP answered {status}"),
            retry_after: answer.retry_after,
        }
    } else {
        Outcome::Rejected {
            code: None,
            status,
            detail: format!(
                "DMP refused ({transaction}, {status}): {}",
                mhd::outcome_text(&answer.body)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock more than a minute from the DMP's is reported, at most
    /// once per ten minutes.
    #[test]
    fn a_clock_far_from_the_dmps_is_reported() {
        use std::time::{Duration, SystemTime};
        let theirs = SystemTime::UNIX_EPOCH + Duration::from_secs(1_765_000_000);
        assert_eq!(
            ClockWatch::skew(theirs, theirs + Duration::from_secs(60)),
            None
        );
        assert_eq!(
            ClockWatch::skew(theirs, theirs - Duration::from_secs(59)),
            None
        );
        assert_eq!(
            ClockWatch::skew(theirs, theirs + Duration::from_secs(61)),
            Some((true, 61))
        );
        assert_eq!(
            ClockWatch::skew(theirs, theirs - Duration::from_secs(3600)),
            Some((false, 3600))
        );
        let watch = ClockWatch::default();
        assert!(!watch.compare(theirs, theirs + Duration::from_secs(2)));
        let ours = theirs + Duration::from_secs(300);
        assert!(watch.compare(theirs, ours));
        assert!(!watch.compare(
            theirs + Duration::from_secs(60),
            ours + Duration::from_secs(60)
        ));
        let later = ours + CLOCK_WARNING_EVERY;
        assert!(watch.compare(later - Duration::from_secs(300), later));
    }

    /// The TD0.2 answers kept are bounded: past the capacity, stale
    /// answers go, then all; a fresh answer is trusted for an hour.
    #[test]
    fn the_td02_cache_stays_within_its_capacity() {
        let mut cache = FedPatients::new(3);
        for (index, patient) in ["a", "b", "c"].iter().enumerate() {
            cache.remember(patient, index as i64);
        }
        assert_eq!(cache.answered_at.len(), 3);
        assert!(cache.is_fresh("a", TD02_CACHE_MS - 1));
        assert!(!cache.is_fresh("a", TD02_CACHE_MS));
        // Again for a patient it holds: no eviction.
        cache.remember("b", 10);
        assert_eq!(cache.answered_at.len(), 3);
        // A fourth while all are fresh: the cache starts over.
        cache.remember("d", 20);
        assert_eq!(cache.answered_at.len(), 1);
        assert!(cache.is_fresh("d", 20) && !cache.is_fresh("a", 20));
        // Full again, one answer stale: only it goes.
        cache.remember("e", TD02_CACHE_MS);
        cache.remember("f", TD02_CACHE_MS + 5);
        cache.remember("g", TD02_CACHE_MS + 30);
        assert_eq!(cache.answered_at.len(), 3, "{cache:?}");
        assert!(cache.is_fresh("e", TD02_CACHE_MS + 30));
        assert!(!cache.is_fresh("d", TD02_CACHE_MS + 30));
        for i in 0..10 * TD02_CACHE_ENTRIES.min(1000) {
            cache.remember(&i.to_string(), TD02_CACHE_MS + 40);
            assert!(cache.answered_at.len() <= 3);
        }
    }
}
