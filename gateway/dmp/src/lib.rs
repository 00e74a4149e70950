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
//! sets, the CDA), stores documents in memory, lists them at
//! `GET /simulator/documents`, and can be told to fail.
//!
//! Not built yet (docs/dmp.md): the VIHF and its signature, TD0.2, ITI-18
//! and replacement (RPLC), deletion, ITI-43, the MHD mode, and the
//! business acknowledgement (ZAM^Z01) to HL7 v2 senders.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod codes;
pub mod document;
pub mod refusal;
pub mod simulator;
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
    /// The DMP took every document of the message.
    Accepted { status: u16, documents: usize },
    /// The message holds no CDA document: nothing is sent.
    NothingToSend,
    /// A rule checked before sending refused the message; nothing was
    /// sent. Never retried.
    Refused(Refusal),
    /// The DMP refused the submission (its codes and texts). Never
    /// retried.
    Rejected { status: u16, detail: String },
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
        })
    }

    /// The metadata attributes whose codes are checked, with their files.
    pub fn value_sets(&self) -> &ValueSets {
        &self.value_sets
    }

    /// Submits the CDA documents of `key.bundle`; `attempt` counts from 1.
    pub async fn submit(&self, key: SubmissionKey<'_>, attempt: u32, now_ms: i64) -> Outcome {
        let prepared =
            match document::prepare(key.bundle, &self.settings, &self.value_sets, key, now_ms) {
                Ok(Some(prepared)) => prepared,
                Ok(None) => return Outcome::NothingToSend,
                Err(refusal) => return Outcome::Refused(refusal),
            };
        let addressing = Addressing {
            to: self.client.url().to_string(),
            message_id: codes::uuid_urn(&[
                &key.outbox_id.to_be_bytes(),
                &attempt.to_be_bytes(),
                &now_ms.to_be_bytes(),
            ]),
        };
        let security = match &self.signer {
            Some(signer) => {
                let subject = vihf::Subject {
                    structure_id: &self.settings.structure_id,
                    lps_name: &self.settings.lps_name,
                    lps_version: &self.settings.lps_version,
                    lps_homologation: &self.settings.lps_homologation,
                    ins: &prepared.submission.set.patient_id,
                };
                let id = format!("_{}", addressing.message_id.trim_start_matches("urn:uuid:"));
                match signer.security_header(&subject, &id, now_ms) {
                    Ok(header) => Some(header),
                    Err(error) => {
                        return Outcome::Unavailable {
                            status: None,
                            detail: error.to_string(),
                            retry_after: None,
                        }
                    }
                }
            }
            None => None,
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
        let documents = parts.len();
        let request = package(&envelope, &parts, ACTION_ITI41);
        let answer = match self
            .client
            .post(&request.content_type, ACCEPT, Bytes::from(request.body))
            .await
        {
            Ok(answer) => answer,
            Err(error) => {
                return Outcome::Unavailable {
                    status: None,
                    detail: error.to_string(),
                    retry_after: None,
                }
            }
        };
        let status = answer.status;
        let retry_after = answer.retry_after;
        let content_type = answer
            .content_type
            .as_deref()
            .unwrap_or("application/soap+xml");
        match xds::response::read(content_type, &answer.body) {
            Ok(Answer::Success) if (200..300).contains(&status) => {
                Outcome::Accepted { status, documents }
            }
            Ok(Answer::Failure(errors)) => {
                // A repeat whose first answer was lost: the DMP already
                // holds this very submission set.
                let repeat = attempt > 1
                    && !errors.is_empty()
                    && errors
                        .iter()
                        .all(|e| e.code == "XDSDuplicateUniqueIdInRegistry");
                if repeat {
                    Outcome::Accepted { status, documents }
                } else {
                    Outcome::Rejected {
                        status,
                        detail: format!("DMP refused: {}", Answer::Failure(errors).summary()),
                    }
                }
            }
            Ok(Answer::Fault { code, reason }) if !code.ends_with("Receiver") => {
                Outcome::Rejected {
                    status,
                    detail: format!("DMP SOAP fault {code}: {reason}"),
                }
            }
            Ok(answer) => Outcome::Unavailable {
                status: Some(status),
                detail: format!("DMP answered {status}: {}", answer.summary()),
                retry_after,
            },
            Err(error) if status >= 500 || status == 429 || status == 408 => Outcome::Unavailable {
                status: Some(status),
                detail: format!("DMP answered {status}: {error}"),
                retry_after,
            },
            Err(error) => Outcome::Rejected {
                status,
                detail: format!("DMP answered {status} with no readable SOAP answer: {error}"),
            },
        }
    }
}
