//! What the simulator holds: the documents it took, the submission sets
//! it saw, and the faults it was told to produce.

use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{json, Value};
use xds::metadata::DocumentEntry;

use crate::ValueSets;

/// A document the simulator took.
#[derive(Debug, Clone)]
pub struct StoredDocument {
    pub entry_uuid: String,
    pub submission_set_unique_id: String,
    pub content_type_code: String,
    pub entry: DocumentEntry,
    pub bytes: Vec<u8>,
    /// `Approved`, or `Deprecated` once replaced.
    pub status: &'static str,
    /// The uniqueId of the signature document (IHE DSG) that signed the
    /// document's submission set, when it came signed.
    pub signature: Option<String>,
}

impl StoredDocument {
    /// The document as an ITI-18 answer gives it.
    pub fn found(&self) -> xds::query::FoundEntry {
        let mut entry = self.entry.clone();
        entry.id = self.entry_uuid.clone();
        xds::query::FoundEntry {
            entry,
            status: match self.status {
                "Approved" => xds::query::STATUS_APPROVED.to_string(),
                _ => xds::query::STATUS_DEPRECATED.to_string(),
            },
            repository_unique_id: Some(super::REPOSITORY_UNIQUE_ID.to_string()),
        }
    }

    /// The document's listing in `GET /simulator/documents`.
    pub fn listing(&self) -> Value {
        let code =
            |c: &xds::Code| json!({"code": c.code, "scheme": c.scheme, "display": c.display});
        json!({
            "entryUUID": self.entry_uuid,
            "uniqueId": self.entry.unique_id,
            "patientId": self.entry.patient_id,
            "sourcePatientId": self.entry.source_patient_id,
            "status": self.status,
            "title": self.entry.title,
            "mimeType": self.entry.mime_type,
            "hash": self.entry.hash,
            "size": self.entry.size,
            "creationTime": self.entry.creation_time,
            "serviceStartTime": self.entry.service_start_time,
            "languageCode": self.entry.language_code,
            "typeCode": code(&self.entry.type_code),
            "classCode": code(&self.entry.class_code),
            "formatCode": code(&self.entry.format_code),
            "healthcareFacilityTypeCode": code(&self.entry.healthcare_facility_type),
            "practiceSettingCode": code(&self.entry.practice_setting),
            "confidentialityCode": self.entry.confidentiality.iter().map(code).collect::<Vec<_>>(),
            "legalAuthenticator": self.entry.legal_authenticator,
            "authorPerson": self.entry.authors.iter().filter_map(|a| a.person.clone()).collect::<Vec<_>>(),
            "submissionSetUniqueId": self.submission_set_unique_id,
            "contentTypeCode": self.content_type_code,
            "signature": self.signature,
        })
    }
}

/// Why a checked submission was not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// A uniqueId already registered.
    Duplicate(String),
    /// A replaced entry that is not (or no longer) approved.
    NotApproved(String),
}

/// A fault the next requests get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A `RegistryResponse` Failure with this error code and text.
    Reject { code: String, text: String },
    /// This HTTP status with a SOAP fault of the receiver.
    Status(u16),
    /// Answer after this many milliseconds.
    Slow(u64),
    /// Close the connection without answering.
    Drop,
}

#[derive(Default)]
struct Held {
    /// Patients (INS value) whose DMP is not active, or whose feeding is
    /// refused; every other patient has an active DMP open to feeding.
    patients: std::collections::HashMap<String, crate::td02::PatientStatus>,
    documents: Vec<StoredDocument>,
    submission_sets: Vec<String>,
    /// The last ITI-65 Bundle received, as received.
    last_bundle: Option<Vec<u8>>,
    /// The fault and how many more requests get it (`None`: all).
    fault: Option<(Fault, Option<u32>)>,
    requests: u64,
}

/// The simulator's state, shared by its connections.
pub struct SimulatorState {
    held: Mutex<Held>,
    pub(super) value_sets: ValueSets,
    pub(super) cda_checker: Option<PathBuf>,
    pub(super) require_vihf: bool,
    /// The authorities whose certificates may sign VIHFs and submission
    /// sets; without, any certificate is taken.
    pub(super) trust_anchors: Option<crate::vihf::TrustAnchors>,
}

impl SimulatorState {
    pub(super) fn new(
        value_sets: ValueSets,
        cda_checker: Option<PathBuf>,
        require_vihf: bool,
        trust_anchors: Option<crate::vihf::TrustAnchors>,
    ) -> SimulatorState {
        SimulatorState {
            held: Mutex::new(Held::default()),
            value_sets,
            cda_checker,
            require_vihf,
            trust_anchors,
        }
    }

    /// Whether a signer's certificate is one the simulator trusts.
    pub(super) fn trusted(&self, certificate: &[u8]) -> Result<(), crate::vihf::VihfError> {
        match &self.trust_anchors {
            Some(anchors) => anchors.check(certificate),
            None => Ok(()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // A panic elsewhere cannot leave the lists half-written: each
        // change is one push.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The documents held, for one patient (an INS CX) or all.
    pub fn documents(&self, patient: Option<&str>) -> Vec<StoredDocument> {
        self.held()
            .documents
            .iter()
            .filter(|d| {
                patient.is_none_or(|p| {
                    d.entry.patient_id == p
                        || crate::simulator::checks::cx_value(&d.entry.patient_id) == p
                })
            })
            .cloned()
            .collect()
    }

    /// What TD0.2 answers for `patient` (an INS value or CX).
    pub fn patient(&self, patient: &str) -> crate::td02::PatientStatus {
        let value = crate::simulator::checks::cx_value(patient);
        self.held()
            .patients
            .get(value)
            .copied()
            .unwrap_or(crate::td02::PatientStatus {
                state: crate::td02::DmpState::Active,
                feeding_authorized: true,
            })
    }

    /// Sets what TD0.2 answers for `patient` (an INS value).
    pub fn set_patient(&self, patient: &str, status: crate::td02::PatientStatus) {
        self.held().patients.insert(patient.to_string(), status);
    }

    /// Keeps `bundle` as the last ITI-65 Bundle received.
    pub(super) fn keep_last_bundle(&self, bundle: &[u8]) {
        self.held().last_bundle = Some(bundle.to_vec());
    }

    /// The last ITI-65 Bundle received.
    pub fn last_bundle(&self) -> Option<Vec<u8>> {
        self.held().last_bundle.clone()
    }

    /// Requests received on the ITI-41 endpoint.
    pub fn requests(&self) -> u64 {
        self.held().requests
    }

    /// Sets the fault of the next `count` requests (all when `None`);
    /// `None` clears it.
    pub fn set_fault(&self, fault: Option<Fault>, count: Option<u32>) {
        self.held().fault = fault.map(|f| (f, count));
    }

    /// Counts a request and takes the fault it gets, if any.
    pub(super) fn next_fault(&self) -> Option<Fault> {
        let mut held = self.held();
        held.requests += 1;
        let (fault, remaining) = held.fault.clone()?;
        match remaining {
            Some(0) => {
                held.fault = None;
                None
            }
            Some(n) => {
                held.fault = if n > 1 {
                    Some((fault.clone(), Some(n - 1)))
                } else {
                    None
                };
                Some(fault)
            }
            None => Some(fault),
        }
    }

    /// Removes the entries `ids` (ITI-62), all or none: each must be held,
    /// and of `patient` when one is given; the first that is not is
    /// returned.
    pub(super) fn remove(&self, ids: &[String], patient: Option<&str>) -> Result<(), String> {
        let mut held = self.held();
        for id in ids {
            let known = held
                .documents
                .iter()
                .any(|d| &d.entry_uuid == id && patient.is_none_or(|p| d.entry.patient_id == p));
            if !known {
                return Err(id.clone());
            }
        }
        held.documents.retain(|d| !ids.contains(&d.entry_uuid));
        Ok(())
    }

    /// Keeps a whole submission (checked before) and deprecates the
    /// entries it replaces, unless one of its uniqueIds is already
    /// registered or a replaced entry is no longer approved: then nothing
    /// changes. Checked and kept under one lock.
    pub(super) fn register(
        &self,
        set_unique_id: String,
        documents: Vec<StoredDocument>,
        replaced: &[String],
    ) -> Result<(), RegisterError> {
        let mut held = self.held();
        let registered = |unique_id: &str| {
            held.submission_sets.iter().any(|u| u == unique_id)
                || held
                    .documents
                    .iter()
                    .any(|d| d.entry.unique_id == unique_id)
        };
        if registered(&set_unique_id) {
            return Err(RegisterError::Duplicate(set_unique_id));
        }
        if let Some(duplicate) = documents.iter().find(|d| registered(&d.entry.unique_id)) {
            return Err(RegisterError::Duplicate(duplicate.entry.unique_id.clone()));
        }
        for entry in replaced {
            if !held
                .documents
                .iter()
                .any(|d| &d.entry_uuid == entry && d.status == "Approved")
            {
                return Err(RegisterError::NotApproved(entry.clone()));
            }
        }
        for document in held.documents.iter_mut() {
            if replaced.contains(&document.entry_uuid) {
                document.status = "Deprecated";
            }
        }
        held.submission_sets.push(set_unique_id);
        held.documents.extend(documents);
        Ok(())
    }
}
