//! What a site sets for the CI-SIS CDA R2 documents Passerelle writes
//! (`mappers::cda_out`): the custodian, the laboratory, the default legal
//! authenticator, the OID branch of document ids. A lab's FHIR results name
//! none of these reliably (an HPRIM file names no biologist by RPPS), yet the
//! CI-SIS header requires them, so the site states them once here.

use serde::{Deserialize, Serialize};

/// The `[cda]` settings of a site.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CdaSettings {
    /// The site's own OID branch: document ids are `root` = this OID and an
    /// `extension` that Passerelle derives; setIds likewise.
    pub document_id_root: String,
    /// The organisation that keeps the document (`custodian`), identified
    /// by its FINESS number.
    pub custodian: CdaOrganization,
    /// The laboratory that performed the tests and that the author and the
    /// biologists represent; the custodian when absent.
    #[serde(default)]
    pub laboratory: Option<CdaOrganization>,
    /// The biologist who takes legal responsibility for a report that names
    /// none with an RPPS number (HPRIM files never do). Without it such a
    /// report is refused.
    #[serde(default)]
    pub legal_authenticator: Option<CdaProfessional>,
    /// `confidentialityCode` (HL7 v3 Confidentiality: N, R, V).
    #[serde(default = "normal_confidentiality")]
    pub confidentiality_code: String,
    /// OID of the laboratory's local test codes, written as the
    /// `codeSystem` of a local code's `translation`; omitted when absent.
    #[serde(default)]
    pub local_code_system: Option<String>,
}

fn normal_confidentiality() -> String {
    "N".to_string()
}

/// An organisation of the header (custodian, laboratory).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CdaOrganization {
    /// The 9-character FINESS number (written `1` + FINESS under the ANS
    /// structure-identifier OID `1.2.250.1.71.4.2.2`).
    pub finess: String,
    pub name: String,
    /// A telecom URL (`tel:0174589607`, `mailto:...`); `nullFlavor="UNK"`
    /// when absent.
    #[serde(default)]
    pub telecom: Option<String>,
    /// `nullFlavor="UNK"` when absent.
    #[serde(default)]
    pub address: Option<CdaAddress>,
    /// The practice setting (`standardIndustryClassCode`, JDV
    /// practiceSettingCode `1.2.250.1.213.1.1.4.9`): `AMBULATOIRE` for a
    /// town laboratory, `ETABLISSEMENT` for a hospital one.
    #[serde(default = "ambulatory")]
    pub practice_setting: String,
}

fn ambulatory() -> String {
    "AMBULATOIRE".to_string()
}

/// A postal address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CdaAddress {
    #[serde(default)]
    pub lines: Vec<String>,
    #[serde(default)]
    pub postal_code: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
}

/// A health professional of the header (legal authenticator, biologist).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CdaProfessional {
    /// The 11-digit RPPS number (written `8` + RPPS under the ANS
    /// professional-identifier OID `1.2.250.1.71.4.2.1`).
    pub rpps: String,
    pub family: String,
    #[serde(default)]
    pub given: Option<String>,
    /// E.g. `DR`, written as the name's suffix.
    #[serde(default)]
    pub title: Option<String>,
    /// Profession and specialty (TRE_G15 / R38, code system
    /// `1.2.250.1.213.1.1.4.5`).
    #[serde(default = "biologist_code")]
    pub profession_code: String,
    #[serde(default = "biologist_display")]
    pub profession_display: String,
    #[serde(default)]
    pub telecom: Option<String>,
    #[serde(default)]
    pub address: Option<CdaAddress>,
}

fn biologist_code() -> String {
    "G15_10/SM03".to_string()
}

fn biologist_display() -> String {
    "Médecin - Biologie médicale (SM)".to_string()
}
