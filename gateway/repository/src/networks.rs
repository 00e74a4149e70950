//! Patient networks: which care networks each patient of the repository
//! belongs to, and so which patients' data a client may read.
//!
//! A patient belongs to the networks of every client that sent data about
//! them (a Patient written or matched, or any resource whose `patient`
//! search parameter points at them), plus the networks granted to them by
//! hand (`passerelle patients grant`). A client that does not see every
//! network ([`Visibility::Networks`]) reads:
//! - a Patient only when the patient shares one of its networks;
//! - a resource of a type that holds no patient data ([`PATIENT_FREE`]:
//!   practitioners, organisations, locations...) always;
//! - any other resource only when its `patient` parameter points at a
//!   patient it may read. A resource linked to no patient is refused: a
//!   type the index does not link to a patient is assumed to hold patient
//!   data, rather than shown to everybody.
//!
//! Memberships live in `fhir_patient_networks` (`Patient/<id>`, network),
//! written in the transaction of the write they come from.

use std::collections::BTreeSet;

use passerelle_storage::sql::{Sql, SqlValue};
use passerelle_storage::StorageError;
use serde_json::Value;

use crate::params;

/// The network name that stands for every network: a client holding it
/// reads every patient (the gateway's operators).
pub const EVERY_NETWORK: &str = "*";

/// Resource types that hold no patient data: readable whatever the
/// client's networks (its scopes still apply).
pub const PATIENT_FREE: &[&str] = &[
    "CapabilityStatement",
    "CodeSystem",
    "ConceptMap",
    "Endpoint",
    "HealthcareService",
    "Location",
    "Medication",
    "NamingSystem",
    "Organization",
    "OrganizationAffiliation",
    "Practitioner",
    "PractitionerRole",
    "StructureDefinition",
    "Substance",
    "ValueSet",
];

/// Which patients' data a reader may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// Every patient: the gateway's own work, and clients of network `*`.
    Everything,
    /// Patients of these networks only (none: no patient at all).
    Networks(Vec<String>),
}

impl Visibility {
    /// The visibility of a client of `networks`.
    pub fn of(networks: &[String]) -> Visibility {
        if networks.iter().any(|n| n == EVERY_NETWORK) {
            Visibility::Everything
        } else {
            Visibility::Networks(networks.to_vec())
        }
    }

    /// An SQL condition on the row `r` of `fhir_resources` (of type
    /// `resource_type`) that holds when the reader may see it, its values
    /// pushed on `params`; `None` when every row is visible.
    pub fn condition(&self, resource_type: &str, params: &mut Vec<SqlValue>) -> Option<String> {
        let Visibility::Networks(networks) = self else {
            return None;
        };
        if PATIENT_FREE.contains(&resource_type) {
            return None;
        }
        let list = network_list(networks, params);
        Some(if resource_type == "Patient" {
            member_patient(&list)
        } else {
            linked_to_member(&list)
        })
    }

    /// [`Visibility::condition`] for a row `r` of any type (a history of
    /// every type).
    pub fn condition_any_type(&self, params: &mut Vec<SqlValue>) -> Option<String> {
        let Visibility::Networks(networks) = self else {
            return None;
        };
        let list = network_list(networks, params);
        // The type names are this module's constants, not input.
        let free = PATIENT_FREE
            .iter()
            .map(|name| format!("'{name}'"))
            .collect::<Vec<_>>()
            .join(", ");
        Some(format!(
            "(r.resource_type IN ({free}) OR (r.resource_type = 'Patient' AND {}) OR {})",
            member_patient(&list),
            linked_to_member(&list)
        ))
    }

    /// Whether the reader may see `Patient/<id>`.
    pub fn sees_patient(&self, sql: &mut dyn Sql, id: &str) -> Result<bool, StorageError> {
        self.sees_any(sql, &BTreeSet::from([format!("Patient/{id}")]))
    }

    /// Whether the reader may see this version of a resource (its text;
    /// a deletion's empty text is judged by the version before it, which
    /// the caller passes instead).
    pub fn sees(
        &self,
        sql: &mut dyn Sql,
        resource_type: &str,
        id: &str,
        text: &str,
    ) -> Result<bool, StorageError> {
        if matches!(self, Visibility::Everything) || PATIENT_FREE.contains(&resource_type) {
            return Ok(true);
        }
        let resource: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        self.sees_any(sql, &patients_of(resource_type, id, Some(&resource)))
    }

    fn sees_any(
        &self,
        sql: &mut dyn Sql,
        patients: &BTreeSet<String>,
    ) -> Result<bool, StorageError> {
        let Visibility::Networks(networks) = self else {
            return Ok(true);
        };
        if patients.is_empty() || networks.is_empty() {
            return Ok(false);
        }
        for patient in patients {
            let mut params = vec![SqlValue::from(patient.as_str())];
            let list = network_list(networks, &mut params);
            let rows = sql.query(
                &format!(
                    "SELECT 1 FROM fhir_patient_networks WHERE patient = $1 \
                     AND network IN ({list}) LIMIT 1"
                ),
                &params,
            )?;
            if !rows.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The Patient row `r` belongs to one of the networks `list` binds.
fn member_patient(list: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM fhir_patient_networks pn \
         WHERE pn.patient = 'Patient/' || r.id AND pn.network IN ({list}))"
    )
}

/// The row `r` points (`patient` parameter) at a patient of one of the
/// networks `list` binds.
fn linked_to_member(list: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM fhir_index pi JOIN fhir_patient_networks pn \
         ON pn.patient = pi.value WHERE pi.resource_type = r.resource_type \
         AND pi.id = r.id AND pi.param = 'patient' AND pn.network IN ({list}))"
    )
}

/// `$2, $3, ...` for `networks`, pushed after what `params` holds.
fn network_list(networks: &[String], params: &mut Vec<SqlValue>) -> String {
    if networks.is_empty() {
        // `IN ()` is not SQL; a name no network has matches nothing.
        params.push(SqlValue::from(""));
        return format!("${}", params.len());
    }
    networks
        .iter()
        .map(|network| {
            params.push(SqlValue::from(network.as_str()));
            format!("${}", params.len())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The patients (`Patient/<id>`) a resource is about: itself for a
/// Patient, else what its `patient` search parameter points at.
pub fn patients_of(resource_type: &str, id: &str, resource: Option<&Value>) -> BTreeSet<String> {
    if resource_type == "Patient" {
        return BTreeSet::from([format!("Patient/{id}")]);
    }
    let Some(resource) = resource else {
        return BTreeSet::new();
    };
    params::index_rows(resource_type, resource)
        .into_iter()
        .filter(|row| row.param == "patient" && row.value.starts_with("Patient/"))
        .map(|row| row.value)
        .collect()
}

/// Adds `patients` to `networks` (kept once each; [`EVERY_NETWORK`] is no
/// membership).
pub fn join(
    sql: &mut dyn Sql,
    patients: &BTreeSet<String>,
    networks: &[String],
) -> Result<(), StorageError> {
    for patient in patients {
        for network in networks.iter().filter(|n| *n != EVERY_NETWORK) {
            sql.execute(
                "INSERT INTO fhir_patient_networks (patient, network) VALUES ($1, $2) \
                 ON CONFLICT (patient, network) DO NOTHING",
                &[patient.as_str().into(), network.as_str().into()],
            )?;
        }
    }
    Ok(())
}

/// Takes `Patient/<id>` out of `network`; true when it was in it.
pub fn leave(sql: &mut dyn Sql, patient_id: &str, network: &str) -> Result<bool, StorageError> {
    let removed = sql.execute(
        "DELETE FROM fhir_patient_networks WHERE patient = $1 AND network = $2",
        &[format!("Patient/{patient_id}").into(), network.into()],
    )?;
    Ok(removed > 0)
}

/// The networks `Patient/<id>` belongs to, sorted.
pub fn networks_of(sql: &mut dyn Sql, patient_id: &str) -> Result<Vec<String>, StorageError> {
    Ok(sql
        .query(
            "SELECT network FROM fhir_patient_networks WHERE patient = $1 ORDER BY network",
            &[format!("Patient/{patient_id}").into()],
        )?
        .into_iter()
        .filter_map(|row| row.into_iter().next()?.into_string())
        .collect())
}
