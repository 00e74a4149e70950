//! The plain model a CDA R2 document is read into: what the header says
//! (document identity, type, confidentiality, patient, authors, custodian,
//! authenticators, replacements, acts documented, encounter), the body
//! (level 1 or level 3 sections) and, for CR-BIO documents, the result
//! entries. Values are kept as written (timestamps as HL7 TS text, decimals
//! as their exact text); mappers interpret them.

/// An HL7 v3 instance identifier (II): an OID or UUID `root` and an
/// optional `extension` scoped by it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceId {
    pub root: Option<String>,
    pub extension: Option<String>,
    /// `nullFlavor` of an identifier that is not given.
    pub null_flavor: Option<String>,
}

/// A coded value (CD, CE, CV, CS): code, system OID, display, the original
/// text (a narrative reference resolved to its text) and translations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Code {
    pub code: Option<String>,
    pub system: Option<String>,
    pub system_name: Option<String>,
    pub display: Option<String>,
    pub original_text: Option<String>,
    pub translations: Vec<Code>,
    pub null_flavor: Option<String>,
}

/// One part of a person name, with its qualifier (`BR` birth, `SP`
/// spouse, `CL` call me / used, `IN` initial...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamePart {
    pub text: String,
    pub qualifier: Option<String>,
}

/// A person name (PN).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonName {
    pub use_code: Option<String>,
    pub family: Vec<NamePart>,
    pub given: Vec<NamePart>,
    pub prefix: Vec<String>,
    pub suffix: Vec<String>,
    /// The text of a name with no parts.
    pub text: Option<String>,
}

/// A postal address (AD): street lines (street address lines, or house
/// number and street name put together), postal code, city, country.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    pub use_code: Option<String>,
    pub lines: Vec<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
}

/// A telecom address (`tel:`, `mailto:`, `fax:` URL) and its use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Telecom {
    pub value: String,
    pub use_code: Option<String>,
}

/// The patient of `recordTarget`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patient {
    /// `patientRole/id`: INS (roots `1.2.250.1.213.1.4.8`, test `.10`,
    /// demonstration `.11`) and local ids.
    pub ids: Vec<InstanceId>,
    pub names: Vec<PersonName>,
    /// `administrativeGenderCode/@code` (`M`, `F`, `U`).
    pub gender: Option<String>,
    /// `birthTime/@value` (HL7 TS).
    pub birth_time: Option<String>,
    pub addresses: Vec<Address>,
    pub telecoms: Vec<Telecom>,
}

/// An organisation (represented, custodian or scoping organisation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Organization {
    /// e.g. FINESS (`1.2.250.1.71.4.2.2`) or SIRET.
    pub ids: Vec<InstanceId>,
    pub name: Option<String>,
    pub telecoms: Vec<Telecom>,
    pub addresses: Vec<Address>,
}

/// A person or device acting for an organisation (assignedAuthor,
/// assignedEntity).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Party {
    /// e.g. RPPS (`1.2.250.1.71.4.2.1`).
    pub ids: Vec<InstanceId>,
    /// Profession or speciality.
    pub code: Option<Code>,
    pub names: Vec<PersonName>,
    /// The software of an `assignedAuthoringDevice`.
    pub device: Option<String>,
    pub addresses: Vec<Address>,
    pub telecoms: Vec<Telecom>,
    pub organization: Option<Organization>,
}

/// An author, legal authenticator or authenticator: when, and who.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Participation {
    /// `time/@value` (HL7 TS).
    pub time: Option<String>,
    pub party: Party,
}

/// A `relatedDocument`: `RPLC` (this document replaces the parent),
/// `APND`, `XFRM`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelatedDocument {
    pub type_code: Option<String>,
    pub parent_ids: Vec<InstanceId>,
    pub parent_set_id: Option<InstanceId>,
    pub parent_version: Option<String>,
}

/// A `documentationOf/serviceEvent`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceEvent {
    pub ids: Vec<InstanceId>,
    pub code: Option<Code>,
    pub low: Option<String>,
    pub high: Option<String>,
}

/// `componentOf/encompassingEncounter`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encounter {
    pub ids: Vec<InstanceId>,
    pub code: Option<Code>,
    pub low: Option<String>,
    pub high: Option<String>,
    /// `location/healthCareFacility/code`: the kind of facility.
    pub facility_code: Option<Code>,
    /// `location/healthCareFacility/location/name`.
    pub location_name: Option<String>,
    /// `location/healthCareFacility/serviceProviderOrganization`.
    pub service_provider: Option<Organization>,
}

/// The CDA header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub realm: Option<String>,
    pub template_ids: Vec<InstanceId>,
    pub id: Option<InstanceId>,
    /// The document type (LOINC).
    pub code: Option<Code>,
    pub title: Option<String>,
    /// HL7 TS.
    pub effective_time: Option<String>,
    pub confidentiality: Option<Code>,
    pub language: Option<String>,
    pub set_id: Option<InstanceId>,
    pub version_number: Option<String>,
    /// Every `recordTarget` (the CI-SIS allows exactly one).
    pub record_targets: Vec<Patient>,
    pub authors: Vec<Participation>,
    pub custodian: Option<Organization>,
    pub legal_authenticator: Option<Participation>,
    pub authenticators: Vec<Participation>,
    pub related_documents: Vec<RelatedDocument>,
    pub service_events: Vec<ServiceEvent>,
    pub encounter: Option<Encounter>,
}

/// A level-1 body: one encapsulated content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NonXmlBody {
    pub media_type: Option<String>,
    /// `B64` or `TXT`.
    pub representation: Option<String>,
    pub compression: Option<String>,
    /// The content as written (base64 text for `B64`).
    pub content: String,
    /// A `reference/@value` instead of inline content.
    pub reference: Option<String>,
}

/// A level-3 section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub template_ids: Vec<InstanceId>,
    pub code: Option<Code>,
    pub title: Option<String>,
    pub entry_count: usize,
    pub sections: Vec<Section>,
}

/// The body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Body {
    #[default]
    Missing,
    NonXml(NonXmlBody),
    Structured(Vec<Section>),
}

/// A physical quantity (PQ): value and unit as written (`1.50` stays
/// `1.50`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quantity {
    pub value: Option<String>,
    pub unit: Option<String>,
    pub null_flavor: Option<String>,
}

/// An interval bound (IVL_PQ low or high).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bound {
    pub quantity: Quantity,
    /// `inclusive` (true unless written `false`).
    pub inclusive: bool,
}

/// An observation value, by its `xsi:type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// PQ.
    Quantity(Quantity),
    /// IVL_PQ.
    Interval {
        low: Option<Bound>,
        high: Option<Bound>,
    },
    /// RTO, RTO_PQ_PQ...
    Ratio {
        numerator: Quantity,
        denominator: Quantity,
    },
    /// ST, SC, ED: the text.
    Text(String),
    /// CD, CE, CV, CO, CS.
    Coded(Code),
    /// INT (exact text).
    Integer(String),
    /// REAL (exact text).
    Real(String),
    /// BL (`true`/`false`).
    Boolean(String),
    /// TS.
    Time(String),
    /// A type this reader does not interpret; its text if any.
    Other {
        type_name: String,
        text: Option<String>,
    },
}

/// A reference range (`referenceRange/observationRange`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceRange {
    pub value: Option<Value>,
    pub interpretation: Option<Code>,
    pub text: Option<String>,
}

/// A specimen: a collected sample (specimen collection procedure) or a
/// microbiology isolate (an organizer's `specimen` with class `MIC`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Specimen {
    pub ids: Vec<InstanceId>,
    /// The nature of the sample, or the organism of an isolate.
    pub type_code: Option<Code>,
    /// `MIC` for an isolate.
    pub class_code: Option<String>,
    /// HL7 TS of collection.
    pub collected: Option<String>,
    /// HL7 TS of reception at the laboratory.
    pub received: Option<String>,
    pub body_site: Option<Code>,
    /// The specimen an isolate comes from (index in
    /// [`LabReport::specimens`]).
    pub parent: Option<usize>,
}

/// One result observation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabObservation {
    pub ids: Vec<InstanceId>,
    pub code: Code,
    /// `statusCode/@code` (`completed`, `active`, `aborted`...).
    pub status: Option<String>,
    /// HL7 TS.
    pub effective_time: Option<String>,
    pub value: Option<Value>,
    pub interpretations: Vec<Code>,
    pub method: Option<Code>,
    pub reference_ranges: Vec<ReferenceRange>,
    pub comments: Vec<String>,
    /// Index in [`LabReport::specimens`].
    pub specimen: Option<usize>,
    /// The battery (organizer) the result belongs to.
    pub battery: Option<Code>,
    /// The chapter (section) code.
    pub chapter: Option<Code>,
    /// Observations nested in this one (indexes in
    /// [`LabReport::observations`]).
    pub members: Vec<usize>,
    /// 1-based line of the observation, for errors.
    pub line: usize,
}

/// The CR-BIO result entries of a level-3 laboratory report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabReport {
    /// Every result, depth first in document order.
    pub observations: Vec<LabObservation>,
    pub specimens: Vec<Specimen>,
    /// Comments on the report (or a chapter) as a whole.
    pub comments: Vec<String>,
}

/// A document read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    pub header: Header,
    pub body: Body,
    /// For a CR-BIO (or IHE XD-LAB) document with a structured body.
    pub lab: Option<LabReport>,
}

/// The template of the CI-SIS CR-BIO model.
pub const CR_BIO_TEMPLATE: &str = "1.2.250.1.213.1.1.1.55";
/// IHE XD-LAB's laboratory report template.
pub const XD_LAB_TEMPLATE: &str = "1.3.6.1.4.1.19376.1.3.3";

impl Document {
    /// Whether the header declares the CR-BIO (or XD-LAB) template.
    pub fn is_lab_report(&self) -> bool {
        self.header.template_ids.iter().any(|t| {
            matches!(
                t.root.as_deref(),
                Some(CR_BIO_TEMPLATE) | Some(XD_LAB_TEMPLATE)
            )
        })
    }
}
