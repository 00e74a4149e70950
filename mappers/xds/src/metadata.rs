//! The metadata of one submission, as plain data: the submission set, its
//! document entries and the associations between them (ITI TF-3 4.2.3).
//! HL7 v2 typed values (CX, XCN, XON) are kept as the ER7 text XDS
//! carries in its slots; times are XDS `DTM` in UTC (`YYYYMMDDhhmmss`).

/// A coded value: `code` in the coding scheme `scheme` (an OID), shown as
/// `display`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Code {
    pub code: String,
    pub scheme: String,
    pub display: String,
}

impl Code {
    pub fn new(code: &str, scheme: &str, display: &str) -> Code {
        Code {
            code: code.to_string(),
            scheme: scheme.to_string(),
            display: display.to_string(),
        }
    }

    /// Whether code and scheme are both given.
    pub fn is_set(&self) -> bool {
        !self.code.trim().is_empty() && !self.scheme.trim().is_empty()
    }
}

/// An author (ITI TF-3 4.2.3.1.4): the person (XCN), institutions (XON),
/// roles and specialties (`code^display^&scheme&ISO`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Author {
    pub person: Option<String>,
    pub institutions: Vec<String>,
    pub roles: Vec<String>,
    pub specialties: Vec<String>,
    pub telecoms: Vec<String>,
}

/// One document entry (`rim:ExtrinsicObject`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DocumentEntry {
    /// The entry's id in the submission: a symbolic id (`Document01`) or a
    /// `urn:uuid:`; it also names the document's part in the package.
    pub id: String,
    pub unique_id: String,
    /// The patient in the registry's affinity domain (for the DMP the INS,
    /// `value^^^&1.2.250.1.213.1.4.8&ISO^NH`).
    pub patient_id: String,
    pub source_patient_id: String,
    /// `PID-3|…`, `PID-5|…`, `PID-7|…`, `PID-8|…` lines.
    pub source_patient_info: Vec<String>,
    pub mime_type: String,
    /// SHA-1 of the document, lower-case hex.
    pub hash: String,
    pub size: u64,
    pub language_code: String,
    pub creation_time: String,
    pub service_start_time: Option<String>,
    pub service_stop_time: Option<String>,
    pub title: Option<String>,
    pub comments: Option<String>,
    pub class_code: Code,
    pub type_code: Code,
    pub format_code: Code,
    pub healthcare_facility_type: Code,
    pub practice_setting: Code,
    pub confidentiality: Vec<Code>,
    pub event_codes: Vec<Code>,
    pub authors: Vec<Author>,
    pub legal_authenticator: Option<String>,
}

/// The submission set (`rim:RegistryPackage`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubmissionSet {
    pub id: String,
    pub unique_id: String,
    pub source_id: String,
    pub patient_id: String,
    pub submission_time: String,
    pub content_type: Code,
    pub title: Option<String>,
    pub authors: Vec<Author>,
}

/// The association type by which a new document replaces an older one.
pub const ASSOCIATION_RPLC: &str = "urn:ihe:iti:2007:AssociationType:RPLC";

/// The association type by which a signature document (IHE DSG) signs
/// the submission set it belongs to: from the signature's entry to the
/// set.
pub const ASSOCIATION_SIGNS: &str = "urn:ihe:iti:2007:AssociationType:signs";

/// An association other than the submission set's `HasMember` ones (which
/// are written for every entry): a replacement, from the new entry to the
/// entryUUID of the one it replaces, or a signature's `signs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    pub id: String,
    pub kind: String,
    pub source: String,
    pub target: String,
}

/// One ITI-41 submission's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Submission {
    pub set: SubmissionSet,
    pub documents: Vec<DocumentEntry>,
    pub associations: Vec<Association>,
}

impl DocumentEntry {
    /// The names of required attributes (ITI TF-3 table 4.3.1-3, "R" for
    /// a Document Source, as the DMP requires them) that are empty.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        let texts: [(&'static str, &str); 7] = [
            ("uniqueId", &self.unique_id),
            ("patientId", &self.patient_id),
            ("sourcePatientId", &self.source_patient_id),
            ("mimeType", &self.mime_type),
            ("hash", &self.hash),
            ("languageCode", &self.language_code),
            ("creationTime", &self.creation_time),
        ];
        for (name, value) in texts {
            if value.trim().is_empty() {
                missing.push(name);
            }
        }
        let codes: [(&'static str, &Code); 5] = [
            ("classCode", &self.class_code),
            ("typeCode", &self.type_code),
            ("formatCode", &self.format_code),
            ("healthcareFacilityTypeCode", &self.healthcare_facility_type),
            ("practiceSettingCode", &self.practice_setting),
        ];
        for (name, code) in codes {
            if !code.is_set() {
                missing.push(name);
            }
        }
        if self.size == 0 {
            missing.push("size");
        }
        if !self.confidentiality.iter().any(Code::is_set) {
            missing.push("confidentialityCode");
        }
        if self.authors.is_empty() {
            missing.push("author");
        }
        missing
    }
}

impl SubmissionSet {
    /// The names of required attributes that are empty.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        for (name, value) in [
            ("uniqueId", &self.unique_id),
            ("sourceId", &self.source_id),
            ("patientId", &self.patient_id),
            ("submissionTime", &self.submission_time),
        ] {
            if value.trim().is_empty() {
                missing.push(name);
            }
        }
        if !self.content_type.is_set() {
            missing.push("contentTypeCode");
        }
        if self.authors.is_empty() {
            missing.push("author");
        }
        missing
    }
}

/// The OID of a CX identifier's assigning authority
/// (`value^^^&OID&ISO^type`), when it has one.
pub fn cx_authority(cx: &str) -> Option<&str> {
    let authority = cx.split('^').nth(3)?;
    let mut parts = authority.split('&');
    parts.next();
    parts.next().filter(|oid| !oid.is_empty())
}

/// A CX identifier's value (its first component).
pub fn cx_value(cx: &str) -> &str {
    cx.split('^').next().unwrap_or_default()
}
