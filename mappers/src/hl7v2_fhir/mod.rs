//! Built-in HL7 v2 to FHIR R4 mappings: ADT (with INS and PAM-FR), ORU,
//! MDM, SIU, VXU and ORM/OML. Resources are built with fhir-sdk's R4B types
//! and assembled into a transaction Bundle whose entries are conditional
//! (on business identifiers or deterministic ones), so a replayed message
//! never creates duplicates at a FHIR server.

mod adt;
pub(crate) mod bundle;
mod datatypes;
mod documents;
pub(crate) mod elements;
mod fuzzing;
mod mdm;
mod observations;
mod orders;
mod oru;
mod pamfr;
mod parties;
mod patient;
mod siu;
mod specimens;
mod support;
pub(crate) mod ucum;
mod vxu;

// The mappers' settings are plain data of their own crate (the gateway's
// configuration names them without compiling the mappers).
use mapping_settings as config;
pub use mapping_settings::{AdtConfig, BuiltinConfig, MapperToggle, OruConfig, PatientWrite};

pub use datatypes::identifier_system;
pub use fuzzing::fuzz_map;

use std::sync::Arc;

use crate::mapping::{Mapper, MapperRegistry};

/// The built-in mappers enabled by `config`.
pub fn builtin_mappers(config: &BuiltinConfig) -> Vec<Arc<dyn Mapper>> {
    let mut mappers: Vec<Arc<dyn Mapper>> = Vec::new();
    if config.adt.enabled {
        mappers.push(Arc::new(adt::AdtMapper {
            config: config.adt.clone(),
        }));
    }
    if config.oru.enabled {
        mappers.push(Arc::new(oru::OruMapper {
            config: config.oru.clone(),
        }));
    }
    if config.mdm.enabled {
        mappers.push(Arc::new(mdm::MdmMapper));
    }
    if config.siu.enabled {
        mappers.push(Arc::new(siu::SiuMapper));
    }
    if config.vxu.enabled {
        mappers.push(Arc::new(vxu::VxuMapper));
    }
    if config.orders.enabled {
        mappers.push(Arc::new(orders::OrdersMapper));
    }
    mappers
}

/// A registry holding the built-in mappers enabled by `config`.
pub fn builtin_registry(config: &BuiltinConfig) -> MapperRegistry {
    let mut registry = MapperRegistry::default();
    for mapper in builtin_mappers(config) {
        // Built-ins claim disjoint selectors; a clash is a bug caught by
        // the unit test `builtins_register_without_conflict`.
        let _ = registry.register(mapper);
    }
    registry
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_frcore;
#[cfg(test)]
mod tests_orders;
#[cfg(test)]
mod tests_oru;
