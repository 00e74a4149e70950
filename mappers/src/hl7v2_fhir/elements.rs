//! Empty fhir-sdk elements for the mappings to fill in place, built as
//! struct literals rather than through fhir-sdk's builders: a builder
//! starts from an all-`None` state, moves it at every setter and moves it
//! again into the box, several hundred instructions for a two-string
//! Reference, and every OBX builds about twenty such elements.
//!
//! Each literal names every field, so a fhir-sdk upgrade that adds one
//! fails to compile here instead of leaving it unset; the tests check that
//! each is what the empty builder gives.
//!
//! The `refill_*` functions write the same element over one left from a
//! previous result (see [`Spare`]): every field is named, so whatever the
//! previous value held and this one does not is cleared, and the Strings,
//! Boxes and Vecs already allocated are reused. An ORU's OBX are mostly
//! the same shape, so most of an Observation's allocations happen once per
//! message instead of once per result.

use crate::fhir::r4b::codes::{ObservationStatus, QuantityComparator};
use crate::fhir::r4b::resources::Observation;
use crate::fhir::r4b::types::{
    CodeableConcept, CodeableConceptInner, Coding, CodingInner, Identifier, IdentifierInner,
    Quantity, QuantityInner, Reference, ReferenceInner,
};
use crate::fhir::ExactDecimals;

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

/// An Observation with only its required status and code, from the
/// builder: `ObservationInner` has a private field, so it cannot be a
/// literal. Built once per message ([`Spare`] refills it for the next
/// result). Not cloned from a template: `Clone` of an Observation clones
/// its `contained` resources, and that one call made this crate's release
/// build generate and optimise every R4B type's `Clone` (docs/performance.md,
/// "Build time").
pub(crate) fn observation(
    status: ObservationStatus,
    code: CodeableConcept,
) -> MapResult<Observation> {
    built(Observation::builder().status(status).code(code).build())
}

/// `slot` holding `text`, in the String already there when there is one.
pub(crate) fn set_text(slot: &mut Option<String>, text: &str) {
    match slot {
        Some(existing) => {
            existing.clear();
            existing.push_str(text);
        }
        None => *slot = Some(text.to_owned()),
    }
}

/// `slot` holding `text` or nothing.
pub(crate) fn set_optional_text(slot: &mut Option<String>, text: Option<&str>) {
    match text {
        Some(text) => set_text(slot, text),
        None => *slot = None,
    }
}

/// A Coding of `system`, `code` and `display` over `coding`.
pub(crate) fn refill_coding(
    coding: &mut Coding,
    system: Option<&str>,
    code: &str,
    display: Option<&str>,
) {
    let CodingInner {
        id,
        extension,
        system: system_slot,
        system_ext,
        version,
        version_ext,
        code: code_slot,
        code_ext,
        display: display_slot,
        display_ext,
        user_selected,
        user_selected_ext,
    } = &mut *coding.0;
    *id = None;
    extension.clear();
    set_optional_text(system_slot, system);
    *system_ext = None;
    *version = None;
    *version_ext = None;
    set_text(code_slot, code);
    *code_ext = None;
    set_optional_text(display_slot, display);
    *display_ext = None;
    *user_selected = None;
    *user_selected_ext = None;
}

/// Coding number `index` of `codings`, refilled or added; the caller
/// truncates `codings` to the codings it filled.
pub(crate) fn refill_coding_at(
    codings: &mut Vec<Option<Coding>>,
    index: usize,
    system: Option<&str>,
    code: &str,
    display: Option<&str>,
) {
    refill_coding(slot_at(codings, index, coding), system, code, display);
}

/// Item `index` of `items` to refill: the one there, or a new one from
/// `fresh` in an empty slot or pushed. Callers fill items in order, so
/// `index` is at most `items.len()`.
pub(crate) fn slot_at<T>(
    items: &mut Vec<Option<T>>,
    index: usize,
    fresh: impl FnOnce() -> T,
) -> &mut T {
    if index >= items.len() {
        items.push(None);
    }
    let at = index.min(items.len() - 1);
    items[at].get_or_insert_with(fresh)
}

/// A CodeableConcept's own fields cleared but for its codings (left for
/// the caller to refill and truncate) and its text.
pub(crate) fn reset_concept(concept: &mut CodeableConcept, text: Option<&str>) {
    let CodeableConceptInner {
        id,
        extension,
        coding: _,
        coding_ext,
        text: text_slot,
        text_ext,
    } = &mut *concept.0;
    *id = None;
    extension.clear();
    coding_ext.clear();
    set_optional_text(text_slot, text);
    *text_ext = None;
}

/// A CodeableConcept with the one coding `system|code` (`display`).
pub(crate) fn refill_concept(
    concept: &mut CodeableConcept,
    system: Option<&str>,
    code: &str,
    display: Option<&str>,
) {
    reset_concept(concept, None);
    refill_coding_at(&mut concept.coding, 0, system, code, display);
    concept.coding.truncate(1);
}

/// Concept number `index` of `concepts` as [`refill_concept`] makes it,
/// refilled or added; the caller truncates `concepts`.
pub(crate) fn refill_concept_at(
    concepts: &mut Vec<Option<CodeableConcept>>,
    index: usize,
    system: Option<&str>,
    code: &str,
    display: Option<&str>,
) {
    refill_concept(
        slot_at(concepts, index, codeable_concept),
        system,
        code,
        display,
    );
}

/// A Reference to `to` (a Bundle entry's fullUrl) over `reference`.
pub(crate) fn refill_reference(reference: &mut Reference, to: &str) {
    let ReferenceInner {
        id,
        extension,
        reference: reference_slot,
        reference_ext,
        r#type,
        r#type_ext,
        identifier,
        identifier_ext,
        display,
        display_ext,
    } = &mut *reference.0;
    *id = None;
    extension.clear();
    set_text(reference_slot, to);
    *reference_ext = None;
    *r#type = None;
    *r#type_ext = None;
    *identifier = None;
    *identifier_ext = None;
    *display = None;
    *display_ext = None;
}

/// `slot` holding a Reference to `to`.
pub(crate) fn set_reference(slot: &mut Option<Reference>, to: &str) {
    refill_reference(slot.get_or_insert_with(reference), to);
}

/// `slots` holding one Reference, to `to`.
pub(crate) fn set_one_reference(slots: &mut Vec<Option<Reference>>, to: &str) {
    refill_reference(slot_at(slots, 0, reference), to);
    slots.truncate(1);
}

/// An Identifier of `system` and `value` over `identifier`.
pub(crate) fn refill_identifier(identifier: &mut Identifier, system: &str, value: &str) {
    let IdentifierInner {
        id,
        extension,
        r#use,
        r#use_ext,
        r#type,
        r#type_ext,
        system: system_slot,
        system_ext,
        value: value_slot,
        value_ext,
        period,
        period_ext,
        assigner,
        assigner_ext,
    } = &mut *identifier.0;
    *id = None;
    extension.clear();
    *r#use = None;
    *r#use_ext = None;
    *r#type = None;
    *r#type_ext = None;
    set_text(system_slot, system);
    *system_ext = None;
    set_text(value_slot, value);
    *value_ext = None;
    *period = None;
    *period_ext = None;
    *assigner = None;
    *assigner_ext = None;
}

/// A Quantity over `quantity`: `value`, with `unit` (its display and,
/// when it is UCUM, its code) and `comparator`.
pub(crate) fn refill_quantity(
    quantity: &mut Quantity,
    value: f64,
    unit: Option<(&str, Option<(&str, &str)>)>,
    comparator: Option<QuantityComparator>,
) {
    let QuantityInner {
        id,
        extension,
        value: value_slot,
        value_ext,
        comparator: comparator_slot,
        comparator_ext,
        unit: unit_slot,
        unit_ext,
        system,
        system_ext,
        code,
        code_ext,
    } = &mut *quantity.0;
    *id = None;
    extension.clear();
    *value_slot = Some(value);
    *value_ext = None;
    *comparator_slot = comparator;
    *comparator_ext = None;
    set_optional_text(unit_slot, unit.map(|(display, _)| display));
    *unit_ext = None;
    let coded = unit.and_then(|(_, coded)| coded);
    set_optional_text(system, coded.map(|(system, _)| system));
    *system_ext = None;
    set_optional_text(code, coded.map(|(_, code)| code));
    *code_ext = None;
}

/// What one result leaves for the next of the same message: its
/// Observation, whose elements the next refills in place (see the module
/// documentation), and its exact-decimal records' storage.
#[derive(Default)]
pub(crate) struct Spare {
    observation: Option<Observation>,
    decimals: ExactDecimals,
}

impl Spare {
    /// An Observation for the next result: the one left by the previous
    /// result, whose every element the caller must set, or an empty one.
    pub fn observation(&mut self, status: ObservationStatus) -> MapResult<Observation> {
        match self.observation.take() {
            Some(mut observation) if recycling() => {
                observation.status = status;
                Ok(observation)
            }
            _ => observation(status, codeable_concept()),
        }
    }

    /// Exact-decimal records, empty.
    pub fn decimals(&mut self) -> ExactDecimals {
        let mut decimals = std::mem::take(&mut self.decimals);
        decimals.clear();
        decimals
    }

    /// Keeps what a result is done with for the next one.
    pub fn keep(&mut self, observation: Observation, decimals: ExactDecimals) {
        self.observation = Some(observation);
        self.decimals = decimals;
    }
}

/// Whether [`Spare`] hands back what the previous result left; tests turn
/// it off to check that a recycled Observation is the same as a new one.
#[cfg(not(test))]
#[inline]
fn recycling() -> bool {
    true
}

#[cfg(test)]
thread_local! {
    static NO_RECYCLING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
fn recycling() -> bool {
    !NO_RECYCLING.with(std::cell::Cell::get)
}

/// `run` with every result's Observation built afresh, on this thread.
#[cfg(test)]
pub(crate) fn without_recycling<T>(run: impl FnOnce() -> T) -> T {
    NO_RECYCLING.with(|flag| flag.set(true));
    let result = run();
    NO_RECYCLING.with(|flag| flag.set(false));
    result
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

    /// A refilled element holds nothing of what it held before: each is
    /// refilled over one with every field set and compared with one
    /// filled from empty.
    #[test]
    fn refills_leave_nothing_of_the_previous_element() {
        use crate::fhir::r4b::types::{Extension, ExtensionValue, Period};

        let extension = || {
            Extension::builder()
                .url("http://example.org/x".into())
                .value(ExtensionValue::String("z".into()))
                .build()
                .unwrap()
        };
        let full_coding = || {
            Coding::builder()
                .id("c".into())
                .extension(vec![extension()])
                .system("http://example.org/s".into())
                .version("1".into())
                .code("old".into())
                .display("Old".into())
                .user_selected(true)
                .build()
                .unwrap()
        };
        let mut used = full_coding();
        refill_coding(&mut used, None, "new", None);
        let mut fresh = coding();
        refill_coding(&mut fresh, None, "new", None);
        assert_eq!(used, fresh);

        let mut used = CodeableConcept::builder()
            .id("cc".into())
            .extension(vec![extension()])
            .coding(vec![Some(full_coding()), Some(full_coding())])
            .text("old".into())
            .build()
            .unwrap();
        refill_concept(&mut used, Some("http://example.org/t"), "new", Some("New"));
        let mut fresh = codeable_concept();
        refill_concept(&mut fresh, Some("http://example.org/t"), "new", Some("New"));
        assert_eq!(used, fresh);
        let mut concepts = vec![None, Some(used.clone()), Some(used)];
        refill_concept_at(&mut concepts, 0, None, "a", None);
        refill_concept_at(&mut concepts, 1, None, "b", None);
        concepts.truncate(2);
        assert_eq!(concepts.len(), 2);
        assert!(concepts.iter().flatten().all(|c| c.coding.len() == 1));

        let mut used = Reference::builder()
            .id("r".into())
            .extension(vec![extension()])
            .reference("urn:uuid:old".into())
            .r#type("Patient".into())
            .identifier(Identifier::builder().value("x".into()).build().unwrap())
            .display("Old".into())
            .build()
            .unwrap();
        refill_reference(&mut used, "urn:uuid:new");
        let mut fresh = reference();
        refill_reference(&mut fresh, "urn:uuid:new");
        assert_eq!(used, fresh);
        let mut slots = vec![Some(used.clone()), Some(used)];
        set_one_reference(&mut slots, "urn:uuid:one");
        let mut one = reference();
        refill_reference(&mut one, "urn:uuid:one");
        assert_eq!(slots, vec![Some(one)]);

        let mut used = Identifier::builder()
            .id("i".into())
            .extension(vec![extension()])
            .r#use(crate::fhir::r4b::codes::IdentifierUse::Official)
            .r#type(CodeableConcept::builder().text("t".into()).build().unwrap())
            .system("urn:oid:1.2".into())
            .value("old".into())
            .period(Period::builder().build().unwrap())
            .assigner(Reference::builder().display("a".into()).build().unwrap())
            .build()
            .unwrap();
        refill_identifier(&mut used, "urn:ietf:rfc:3986", "urn:uuid:new");
        let mut fresh = identifier();
        refill_identifier(&mut fresh, "urn:ietf:rfc:3986", "urn:uuid:new");
        assert_eq!(used, fresh);

        let mut used = Quantity::builder()
            .id("q".into())
            .extension(vec![extension()])
            .value(1.5)
            .comparator(QuantityComparator::Less)
            .unit("mmol/L".into())
            .system("http://unitsofmeasure.org".into())
            .code("mmol/L".into())
            .build()
            .unwrap();
        refill_quantity(&mut used, 2.0, Some(("g/L", None)), None);
        let mut fresh = quantity();
        refill_quantity(&mut fresh, 2.0, Some(("g/L", None)), None);
        assert_eq!(used, fresh);
        assert_eq!(fresh.unit.as_deref(), Some("g/L"));
        assert_eq!(fresh.system, None);
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
