//! IHE XDS.b documents as they travel: the ebRIM metadata of an ITI-41
//! "Provide and Register Document Set-b" request (a submission set, its
//! document entries, their associations), the SOAP 1.2 envelope with its
//! WS-Addressing header, the MTOM/XOP multipart package that carries the
//! documents beside the XML, the `RegistryResponse` and SOAP faults that
//! answer it, and IHE SVS value-set files (the form in which the ANS
//! publishes its JDV value sets).
//!
//! Each is written ([`write`], [`mtom::package`], [`response::write`]) and
//! read back ([`read`], [`mtom::unpack`], [`response::read`]) here, so the
//! DMP connector and the DMP simulator share one definition of the wire
//! format. XML is read with the `cda` crate's namespace-aware tree (no
//! DTD, no entities, bounded size and depth). Nothing here opens a socket
//! or knows FHIR.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod c14n;
pub mod error;
pub mod fuzzing;
pub mod metadata;
pub mod mtom;
pub mod query;
pub mod read;
pub mod response;
pub mod svs;
pub mod write;

pub use error::XdsError;
pub use metadata::{
    Association, Author, Code, DocumentEntry, Submission, SubmissionSet, ASSOCIATION_RPLC,
    ASSOCIATION_SIGNS,
};
pub use read::{read_provide_and_register, ReceivedSubmission};
pub use write::{provide_and_register, Addressing};

/// SOAP 1.2 envelope namespace.
pub const SOAP_ENV: &str = "http://www.w3.org/2003/05/soap-envelope";
/// WS-Addressing 1.0.
pub const WSA: &str = "http://www.w3.org/2005/08/addressing";
/// XOP include.
pub const XOP: &str = "http://www.w3.org/2004/08/xop/include";
/// IHE XDS.b messages (`ProvideAndRegisterDocumentSetRequest`, `Document`).
pub const XDS_B: &str = "urn:ihe:iti:xds-b:2007";
/// ebXML Registry life-cycle manager (`SubmitObjectsRequest`).
pub const LCM: &str = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0";
/// ebXML Registry information model.
pub const RIM: &str = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0";
/// ebXML Registry services (`RegistryResponse`).
pub const RS: &str = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0";

/// The SOAP action of ITI-41.
pub const ACTION_ITI41: &str = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b";
/// The SOAP action of the ITI-41 response.
pub const ACTION_ITI41_RESPONSE: &str = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse";

/// `RegistryResponse/@status` of a submission taken whole.
pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success";
/// `RegistryResponse/@status` of a refused submission (nothing kept).
pub const STATUS_FAILURE: &str = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure";
/// Severity of a `RegistryError` that refused the submission.
pub const SEVERITY_ERROR: &str = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error";

/// The identifiers of ITI TF-3 4.2.5 (classification schemes, external
/// identifier schemes, object types).
pub mod scheme {
    /// A stable document entry's `objectType`.
    pub const DOCUMENT_ENTRY: &str = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1";
    /// The classification node that makes a RegistryPackage a submission set.
    pub const SUBMISSION_SET_NODE: &str = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd";
    pub const DE_AUTHOR: &str = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d";
    pub const DE_CLASS: &str = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a";
    pub const DE_CONFIDENTIALITY: &str = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f";
    pub const DE_EVENT: &str = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4";
    pub const DE_FORMAT: &str = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d";
    pub const DE_FACILITY: &str = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1";
    pub const DE_PRACTICE: &str = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead";
    pub const DE_TYPE: &str = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983";
    pub const DE_PATIENT_ID: &str = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427";
    pub const DE_UNIQUE_ID: &str = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab";
    pub const SS_AUTHOR: &str = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d";
    pub const SS_CONTENT_TYPE: &str = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500";
    pub const SS_PATIENT_ID: &str = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446";
    pub const SS_SOURCE_ID: &str = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832";
    pub const SS_UNIQUE_ID: &str = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8";
    /// The association from a submission set to each of its members.
    pub const HAS_MEMBER: &str = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember";
}
