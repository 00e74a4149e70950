//! Empty fhir-sdk elements for the mappings to fill in place, built as
//! struct literals rather than through fhir-sdk's builders: a builder
//! starts from an all-`None` state, moves it at every setter and moves it
//! again into the box, several hundred instructions for a two-string
//! Reference, and every OBX builds about twenty such elements.
//!
//! Each literal names every field, so a fhir-sdk upgrade that adds one
//! fails to compile here instead of leaving it unset; the tests check that
//! each is what the empty builder gives.

use std::sync::LazyLock;

use crate::fhir::r4b::codes::ObservationStatus;
use crate::fhir::r4b::resources::Observation;
use crate::fhir::r4b::types::{
    CodeableConcept, CodeableConceptInner, Coding, CodingInner, Identifier, IdentifierInner,
    Quantity, QuantityInner, Reference, ReferenceInner,
};

use super::support::{built, MapResult};

pub(crate) fn coding() -> Coding {
    Coding(Box::new(CodingInner {
        id: None,
        extension: Vec::new(),
        system: None,
        system_ext: None,
        version: None,
        version_ext: None,
        code: None,
        code_ext: None,
        display: None,
        display_ext: None,
        user_selected: None,
        user_selected_ext: None,
    }))
}

pub(crate) fn codeable_concept() -> CodeableConcept {
    CodeableConcept(Box::new(CodeableConceptInner {
        id: None,
        extension: Vec::new(),
        coding: Vec::new(),
        coding_ext: Vec::new(),
        text: None,
        text_ext: None,
    }))
}

pub(crate) fn reference() -> Reference {
    Reference(Box::new(ReferenceInner {
        id: None,
        extension: Vec::new(),
        reference: None,
        reference_ext: None,
        r#type: None,
        r#type_ext: None,
        identifier: None,
        identifier_ext: None,
        display: None,
        display_ext: None,
    }))
}

pub(crate) fn identifier() -> Identifier {
    Identifier(Box::new(IdentifierInner {
        id: None,
        extension: Vec::new(),
        r#use: None,
        r#use_ext: None,
        r#type: None,
        r#type_ext: None,
        system: None,
        system_ext: None,
        value: None,
        value_ext: None,
        period: None,
        period_ext: None,
        assigner: None,
        assigner_ext: None,
    }))
}

pub(crate) fn quantity() -> Quantity {
    Quantity(Box::new(QuantityInner {
        id: None,
        extension: Vec::new(),
        value: None,
        value_ext: None,
        comparator: None,
        comparator_ext: None,
        unit: None,
        unit_ext: None,
        system: None,
        system_ext: None,
        code: None,
        code_ext: None,
    }))
}

/// An Observation with only its required status and code. Cloned from one
/// built once: `ObservationInner` has a private field, so it cannot be a
/// literal, and its builder moves its 1.5 kB state at each step.
pub(crate) fn observation(
    status: ObservationStatus,
    code: CodeableConcept,
) -> MapResult<Observation> {
    static EMPTY: LazyLock<Option<Observation>> = LazyLock::new(|| {
        Observation::builder()
            .status(ObservationStatus::Final)
            .code(codeable_concept())
            .build()
            .ok()
    });
    match &*EMPTY {
        Some(empty) => {
            let mut observation = empty.clone();
            observation.status = status;
            observation.code = code;
            Ok(observation)
        }
        None => built(Observation::builder().status(status).code(code).build()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_the_empty_builders() {
        assert_eq!(coding(), Coding::builder().build().unwrap());
        assert_eq!(
            codeable_concept(),
            CodeableConcept::builder().build().unwrap()
        );
        assert_eq!(reference(), Reference::builder().build().unwrap());
        assert_eq!(identifier(), Identifier::builder().build().unwrap());
        assert_eq!(quantity(), Quantity::builder().build().unwrap());
    }

    #[test]
    fn observation_is_the_builders() {
        let mut code = codeable_concept();
        code.text = Some("Sodium".into());
        for status in [ObservationStatus::Preliminary, ObservationStatus::Final] {
            let expected = Observation::builder()
                .status(status)
                .code(code.clone())
                .build()
                .unwrap();
            assert_eq!(observation(status, code.clone()).unwrap(), expected);
        }
    }
}
