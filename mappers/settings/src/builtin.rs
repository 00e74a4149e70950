//! Typed configuration of the built-in mappers (`[mapping.builtin.*]` in the
//! gateway's file). Unknown keys are refused, like everywhere else.

use serde::{Deserialize, Serialize};

/// Settings of every built-in mapper.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuiltinConfig {
    pub adt: AdtConfig,
    pub oru: OruConfig,
    pub mdm: MapperToggle,
    pub siu: MapperToggle,
    pub vxu: MapperToggle,
    pub orders: MapperToggle,
}

/// A built-in mapper with nothing to configure but whether it runs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MapperToggle {
    pub enabled: bool,
}

impl Default for MapperToggle {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// How the Patient of a message is written at the FHIR server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatientWrite {
    /// Conditional update on the patient identifier: the message's
    /// demographics replace the server's (ADT is the source of truth).
    #[default]
    Update,
    /// Conditional create (`ifNoneExist`): an existing Patient is left as is.
    CreateIfAbsent,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdtConfig {
    pub enabled: bool,
    /// How ADT messages write the Patient.
    pub patient_write: PatientWrite,
}

impl Default for AdtConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            patient_write: PatientWrite::Update,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OruConfig {
    pub enabled: bool,
    /// Name of a code map (`[[mapping.code_maps]]`) applied to OBX-3: a
    /// mapped code is added as a second coding next to the local one.
    pub code_map: Option<String>,
    /// `Observation.category` code from
    /// `http://terminology.hl7.org/CodeSystem/observation-category`.
    pub observation_category: String,
}

impl Default for OruConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            code_map: None,
            observation_category: "laboratory".to_string(),
        }
    }
}
