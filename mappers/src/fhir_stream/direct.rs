//! Writing the resources of a lab result without serde: Observation and
//! the elements it holds.
//!
//! An ORU^R01's Bundle is mostly Observations, and fhir-sdk's serde code
//! for them goes through serde's `flatten` machinery (for `effective[x]`
//! and `value[x]`) and a skip check per field, element extension
//! included: about twenty instructions per byte written, most of the cost
//! of mapping a lab result. This module writes the same bytes member by
//! member. Whatever it does not write itself (extensions, element ids,
//! `_element` extensions, narrative, meta, contained resources,
//! components, sampled data, timing) makes it give up with
//! [`Unsupported`] before or while writing; the caller then throws its
//! output away and lets serde write the whole resource. Either way the
//! bytes are serde's: the tests compare them on random and corpus
//! resources.
//!
//! Members are written in fhir-model's declaration order, which is the
//! order serde writes them in. The element structs are destructured
//! without `..`, so a fhir-sdk upgrade that adds a field fails to compile
//! here; `ObservationInner` has a private field, so a test checks its size
//! instead.

use serde::Serialize;

use super::{write_str, JsonWriter, Mark};
use crate::fhir::r4b::resources::{
    Observation, ObservationEffective, ObservationInner, ObservationReferenceRange,
    ObservationValue,
};
use crate::fhir::r4b::types::{
    Annotation, AnnotationAuthor, AnnotationInner, CodeableConcept, CodeableConceptInner, Coding,
    CodingInner, Identifier, IdentifierInner, Period, PeriodInner, Quantity, QuantityInner, Range,
    RangeInner, Ratio, RatioInner, Reference, ReferenceInner,
};

/// Something the direct writer leaves to serde.
#[derive(Debug)]
pub(super) struct Unsupported;

type Step = Result<(), Unsupported>;

/// `"name":` as one literal, written with one copy.
macro_rules! key {
    ($name:literal) => {
        concat!("\"", $name, "\":")
    };
}

/// Nothing to write here that this module writes itself.
fn absent<T>(value: &Option<T>) -> Step {
    match value {
        None => Ok(()),
        Some(_) => Err(Unsupported),
    }
}

fn empty<T>(values: &[T]) -> Step {
    if values.is_empty() {
        Ok(())
    } else {
        Err(Unsupported)
    }
}

/// An object being written.
struct Members {
    first: bool,
}

impl JsonWriter<'_, '_> {
    fn open(&mut self) -> Members {
        self.out.push(b'{');
        Members { first: true }
    }

    fn close(&mut self) {
        self.out.push(b'}');
    }

    /// `,"name":` (no comma before the first member); `quoted` is
    /// `key!("name")`. Inlined, like [`Self::member`], so that copying the
    /// literal is a few moves instead of a call to `memcpy` (about a fifth
    /// of an ORU's calls to it).
    #[inline(always)]
    fn key(&mut self, members: &mut Members, quoted: &'static str) {
        if members.first {
            members.first = false;
        } else {
            self.out.push(b',');
        }
        self.out.extend_from_slice(quoted.as_bytes());
    }

    /// [`Self::key`], entering `/name`.
    #[inline(always)]
    fn member(&mut self, members: &mut Members, quoted: &'static str) -> Mark {
        self.key(members, quoted);
        let name = quoted
            .get(1..quoted.len().saturating_sub(2))
            .unwrap_or_default();
        self.enter_element(name)
    }

    /// A string member; strings never hold a recorded decimal, so the
    /// pointer is not entered.
    #[inline(always)]
    fn string(&mut self, members: &mut Members, quoted: &'static str, value: Option<&str>) {
        if let Some(value) = value {
            self.key(members, quoted);
            write_str(self.out, value);
        }
    }

    /// A member whose value fhir-sdk's serde code writes (dates, times):
    /// a leaf, cheap through serde.
    #[inline(always)]
    fn leaf<T: Serialize>(
        &mut self,
        members: &mut Members,
        quoted: &'static str,
        value: Option<&T>,
    ) -> Step {
        if let Some(value) = value {
            let mark = self.member(members, quoted);
            value.serialize(&mut *self).map_err(|_| Unsupported)?;
            self.leave(mark);
        }
        Ok(())
    }

    #[inline(always)]
    fn element<T>(
        &mut self,
        members: &mut Members,
        quoted: &'static str,
        value: Option<&T>,
        write: fn(&mut Self, &T) -> Step,
    ) -> Step {
        if let Some(value) = value {
            let mark = self.member(members, quoted);
            write(self, value)?;
            self.leave(mark);
        }
        Ok(())
    }

    /// An array member, left out when empty; a `None` item is `null`, as
    /// serde writes it.
    #[inline(always)]
    fn array<T>(
        &mut self,
        members: &mut Members,
        quoted: &'static str,
        items: &[Option<T>],
        write: fn(&mut Self, &T) -> Step,
    ) -> Step {
        if items.is_empty() {
            return Ok(());
        }
        let mark = self.member(members, quoted);
        self.out.push(b'[');
        for (index, item) in items.iter().enumerate() {
            if index > 0 {
                self.out.push(b',');
            }
            let at = self.enter_index(index);
            match item {
                Some(item) => write(self, item)?,
                None => self.out.extend_from_slice(b"null"),
            }
            self.leave(at);
        }
        self.out.push(b']');
        self.leave(mark);
        Ok(())
    }

    /// An Observation, or [`Unsupported`] (the output is then partial).
    pub(super) fn observation(&mut self, observation: &Observation) -> Step {
        let ObservationInner {
            id,
            meta,
            implicit_rules,
            language,
            text,
            contained,
            extension,
            modifier_extension,
            identifier,
            identifier_ext,
            based_on,
            based_on_ext,
            part_of,
            part_of_ext,
            status,
            status_ext,
            category,
            category_ext,
            code,
            code_ext,
            subject,
            subject_ext,
            focus,
            focus_ext,
            encounter,
            encounter_ext,
            effective,
            effective_ext,
            issued,
            issued_ext,
            performer,
            performer_ext,
            value,
            value_ext,
            data_absent_reason,
            data_absent_reason_ext,
            interpretation,
            interpretation_ext,
            note,
            note_ext,
            body_site,
            body_site_ext,
            method,
            method_ext,
            specimen,
            specimen_ext,
            device,
            device_ext,
            reference_range,
            reference_range_ext,
            has_member,
            has_member_ext,
            derived_from,
            derived_from_ext,
            component,
            component_ext,
            // The private `resource_type`: `observation_layout_is_known`
            // checks that nothing else hides here.
            ..
        } = &*observation.0;
        absent(meta)?;
        absent(text)?;
        empty(contained)?;
        empty(extension)?;
        empty(modifier_extension)?;
        empty(component)?;
        for ext in [
            identifier_ext,
            based_on_ext,
            part_of_ext,
            category_ext,
            focus_ext,
            performer_ext,
            interpretation_ext,
            note_ext,
            reference_range_ext,
            has_member_ext,
            derived_from_ext,
            component_ext,
        ] {
            empty(ext)?;
        }
        for ext in [
            status_ext,
            code_ext,
            subject_ext,
            encounter_ext,
            issued_ext,
            data_absent_reason_ext,
            body_site_ext,
            method_ext,
            specimen_ext,
            device_ext,
        ] {
            absent(ext)?;
        }
        absent(effective_ext)?;
        absent(value_ext)?;

        let mut m = self.open();
        self.string(&mut m, key!("resourceType"), Some("Observation"));
        self.string(&mut m, key!("id"), id.as_deref());
        self.string(&mut m, key!("implicitRules"), implicit_rules.as_deref());
        self.string(&mut m, key!("language"), language.as_deref());
        self.array(&mut m, key!("identifier"), identifier, Self::identifier)?;
        self.array(&mut m, key!("basedOn"), based_on, Self::reference)?;
        self.array(&mut m, key!("partOf"), part_of, Self::reference)?;
        self.string(&mut m, key!("status"), Some(status.as_ref()));
        self.array(&mut m, key!("category"), category, Self::concept)?;
        self.element(&mut m, key!("code"), Some(code), Self::concept)?;
        self.element(&mut m, key!("subject"), subject.as_ref(), Self::reference)?;
        self.array(&mut m, key!("focus"), focus, Self::reference)?;
        self.element(
            &mut m,
            key!("encounter"),
            encounter.as_ref(),
            Self::reference,
        )?;
        match effective {
            None => {}
            Some(ObservationEffective::DateTime(when)) => {
                self.leaf(&mut m, key!("effectiveDateTime"), Some(when))?;
            }
            Some(ObservationEffective::Period(period)) => {
                self.element(&mut m, key!("effectivePeriod"), Some(period), Self::period)?;
            }
            Some(ObservationEffective::Instant(when)) => {
                self.leaf(&mut m, key!("effectiveInstant"), Some(when))?;
            }
            Some(ObservationEffective::Timing(_)) => return Err(Unsupported),
        }
        self.leaf(&mut m, key!("issued"), issued.as_ref())?;
        self.array(&mut m, key!("performer"), performer, Self::reference)?;
        match value {
            None => {}
            Some(ObservationValue::Quantity(quantity)) => {
                self.element(
                    &mut m,
                    key!("valueQuantity"),
                    Some(quantity),
                    Self::quantity,
                )?;
            }
            Some(ObservationValue::CodeableConcept(concept)) => {
                self.element(
                    &mut m,
                    key!("valueCodeableConcept"),
                    Some(concept),
                    Self::concept,
                )?;
            }
            Some(ObservationValue::String(text)) => {
                self.string(&mut m, key!("valueString"), Some(text));
            }
            Some(ObservationValue::Boolean(flag)) => {
                self.leaf(&mut m, key!("valueBoolean"), Some(flag))?;
            }
            Some(ObservationValue::Integer(number)) => {
                let mark = self.member(&mut m, key!("valueInteger"));
                self.integer(*number);
                self.leave(mark);
            }
            Some(ObservationValue::Range(range)) => {
                self.element(&mut m, key!("valueRange"), Some(range), Self::range)?;
            }
            Some(ObservationValue::Ratio(ratio)) => {
                self.element(&mut m, key!("valueRatio"), Some(ratio), Self::ratio)?;
            }
            Some(ObservationValue::Time(time)) => {
                self.leaf(&mut m, key!("valueTime"), Some(time))?;
            }
            Some(ObservationValue::DateTime(when)) => {
                self.leaf(&mut m, key!("valueDateTime"), Some(when))?;
            }
            Some(ObservationValue::Period(period)) => {
                self.element(&mut m, key!("valuePeriod"), Some(period), Self::period)?;
            }
            Some(ObservationValue::SampledData(_)) => return Err(Unsupported),
        }
        self.element(
            &mut m,
            key!("dataAbsentReason"),
            data_absent_reason.as_ref(),
            Self::concept,
        )?;
        self.array(
            &mut m,
            key!("interpretation"),
            interpretation,
            Self::concept,
        )?;
        self.array(&mut m, key!("note"), note, Self::annotation)?;
        self.element(&mut m, key!("bodySite"), body_site.as_ref(), Self::concept)?;
        self.element(&mut m, key!("method"), method.as_ref(), Self::concept)?;
        self.element(&mut m, key!("specimen"), specimen.as_ref(), Self::reference)?;
        self.element(&mut m, key!("device"), device.as_ref(), Self::reference)?;
        self.array(
            &mut m,
            key!("referenceRange"),
            reference_range,
            Self::reference_range,
        )?;
        self.array(&mut m, key!("hasMember"), has_member, Self::reference)?;
        self.array(&mut m, key!("derivedFrom"), derived_from, Self::reference)?;
        self.close();
        Ok(())
    }

    fn reference_range(&mut self, range: &ObservationReferenceRange) -> Step {
        let ObservationReferenceRange {
            id,
            extension,
            modifier_extension,
            low,
            low_ext,
            high,
            high_ext,
            r#type,
            r#type_ext,
            applies_to,
            applies_to_ext,
            age,
            age_ext,
            text,
            text_ext,
        } = range;
        absent(id)?;
        empty(extension)?;
        empty(modifier_extension)?;
        empty(applies_to_ext)?;
        for ext in [low_ext, high_ext, r#type_ext, age_ext, text_ext] {
            absent(ext)?;
        }
        let mut m = self.open();
        self.element(&mut m, key!("low"), low.as_ref(), Self::quantity)?;
        self.element(&mut m, key!("high"), high.as_ref(), Self::quantity)?;
        self.element(&mut m, key!("type"), r#type.as_ref(), Self::concept)?;
        self.array(&mut m, key!("appliesTo"), applies_to, Self::concept)?;
        self.element(&mut m, key!("age"), age.as_ref(), Self::range)?;
        self.string(&mut m, key!("text"), text.as_deref());
        self.close();
        Ok(())
    }

    fn concept(&mut self, concept: &CodeableConcept) -> Step {
        let CodeableConceptInner {
            id,
            extension,
            coding,
            coding_ext,
            text,
            text_ext,
        } = &*concept.0;
        absent(id)?;
        empty(extension)?;
        empty(coding_ext)?;
        absent(text_ext)?;
        let mut m = self.open();
        self.array(&mut m, key!("coding"), coding, Self::coding)?;
        self.string(&mut m, key!("text"), text.as_deref());
        self.close();
        Ok(())
    }

    fn coding(&mut self, coding: &Coding) -> Step {
        let CodingInner {
            id,
            extension,
            system,
            system_ext,
            version,
            version_ext,
            code,
            code_ext,
            display,
            display_ext,
            user_selected,
            user_selected_ext,
        } = &*coding.0;
        absent(id)?;
        empty(extension)?;
        for ext in [
            system_ext,
            version_ext,
            code_ext,
            display_ext,
            user_selected_ext,
        ] {
            absent(ext)?;
        }
        let mut m = self.open();
        self.string(&mut m, key!("system"), system.as_deref());
        self.string(&mut m, key!("version"), version.as_deref());
        self.string(&mut m, key!("code"), code.as_deref());
        self.string(&mut m, key!("display"), display.as_deref());
        self.leaf(&mut m, key!("userSelected"), user_selected.as_ref())?;
        self.close();
        Ok(())
    }

    fn reference(&mut self, reference: &Reference) -> Step {
        let ReferenceInner {
            id,
            extension,
            reference,
            reference_ext,
            r#type,
            r#type_ext,
            identifier,
            identifier_ext,
            display,
            display_ext,
        } = &*reference.0;
        absent(id)?;
        empty(extension)?;
        for ext in [reference_ext, r#type_ext, identifier_ext, display_ext] {
            absent(ext)?;
        }
        let mut m = self.open();
        self.string(&mut m, key!("reference"), reference.as_deref());
        self.string(&mut m, key!("type"), r#type.as_deref());
        self.element(
            &mut m,
            key!("identifier"),
            identifier.as_ref(),
            Self::identifier,
        )?;
        self.string(&mut m, key!("display"), display.as_deref());
        self.close();
        Ok(())
    }

    fn identifier(&mut self, identifier: &Identifier) -> Step {
        let IdentifierInner {
            id,
            extension,
            r#use,
            r#use_ext,
            r#type,
            r#type_ext,
            system,
            system_ext,
            value,
            value_ext,
            period,
            period_ext,
            assigner,
            assigner_ext,
        } = &*identifier.0;
        absent(id)?;
        empty(extension)?;
        for ext in [
            r#use_ext,
            r#type_ext,
            system_ext,
            value_ext,
            period_ext,
            assigner_ext,
        ] {
            absent(ext)?;
        }
        let mut m = self.open();
        self.string(&mut m, key!("use"), r#use.as_ref().map(AsRef::as_ref));
        self.element(&mut m, key!("type"), r#type.as_ref(), Self::concept)?;
        self.string(&mut m, key!("system"), system.as_deref());
        self.string(&mut m, key!("value"), value.as_deref());
        self.element(&mut m, key!("period"), period.as_ref(), Self::period)?;
        self.element(&mut m, key!("assigner"), assigner.as_ref(), Self::reference)?;
        self.close();
        Ok(())
    }

    fn quantity(&mut self, quantity: &Quantity) -> Step {
        let QuantityInner {
            id,
            extension,
            value,
            value_ext,
            comparator,
            comparator_ext,
            unit,
            unit_ext,
            system,
            system_ext,
            code,
            code_ext,
        } = &*quantity.0;
        absent(id)?;
        empty(extension)?;
        for ext in [value_ext, comparator_ext, unit_ext, system_ext, code_ext] {
            absent(ext)?;
        }
        let mut m = self.open();
        if let Some(value) = value {
            let mark = self.member(&mut m, key!("value"));
            self.float(*value);
            self.leave(mark);
        }
        self.string(
            &mut m,
            key!("comparator"),
            comparator.as_ref().map(AsRef::as_ref),
        );
        self.string(&mut m, key!("unit"), unit.as_deref());
        self.string(&mut m, key!("system"), system.as_deref());
        self.string(&mut m, key!("code"), code.as_deref());
        self.close();
        Ok(())
    }

    fn range(&mut self, range: &Range) -> Step {
        let RangeInner {
            id,
            extension,
            low,
            low_ext,
            high,
            high_ext,
        } = &*range.0;
        absent(id)?;
        empty(extension)?;
        absent(low_ext)?;
        absent(high_ext)?;
        let mut m = self.open();
        self.element(&mut m, key!("low"), low.as_ref(), Self::quantity)?;
        self.element(&mut m, key!("high"), high.as_ref(), Self::quantity)?;
        self.close();
        Ok(())
    }

    fn ratio(&mut self, ratio: &Ratio) -> Step {
        let RatioInner {
            id,
            extension,
            numerator,
            numerator_ext,
            denominator,
            denominator_ext,
        } = &*ratio.0;
        absent(id)?;
        empty(extension)?;
        absent(numerator_ext)?;
        absent(denominator_ext)?;
        let mut m = self.open();
        self.element(
            &mut m,
            key!("numerator"),
            numerator.as_ref(),
            Self::quantity,
        )?;
        self.element(
            &mut m,
            key!("denominator"),
            denominator.as_ref(),
            Self::quantity,
        )?;
        self.close();
        Ok(())
    }

    fn period(&mut self, period: &Period) -> Step {
        let PeriodInner {
            id,
            extension,
            start,
            start_ext,
            end,
            end_ext,
        } = &*period.0;
        absent(id)?;
        empty(extension)?;
        absent(start_ext)?;
        absent(end_ext)?;
        let mut m = self.open();
        self.leaf(&mut m, key!("start"), start.as_ref())?;
        self.leaf(&mut m, key!("end"), end.as_ref())?;
        self.close();
        Ok(())
    }

    fn annotation(&mut self, annotation: &Annotation) -> Step {
        let AnnotationInner {
            id,
            extension,
            author,
            author_ext,
            time,
            time_ext,
            text,
            text_ext,
        } = &*annotation.0;
        absent(id)?;
        empty(extension)?;
        absent(author_ext)?;
        absent(time_ext)?;
        absent(text_ext)?;
        let mut m = self.open();
        match author {
            None => {}
            Some(AnnotationAuthor::Reference(author)) => {
                self.element(
                    &mut m,
                    key!("authorReference"),
                    Some(author),
                    Self::reference,
                )?;
            }
            Some(AnnotationAuthor::String(author)) => {
                self.string(&mut m, key!("authorString"), Some(author));
            }
        }
        self.leaf(&mut m, key!("time"), time.as_ref())?;
        self.string(&mut m, key!("text"), Some(text));
        self.close();
        Ok(())
    }
}

/// Whether [`JsonWriter::observation`] may be used; tests turn it off to
/// get serde's bytes for the same values.
#[cfg(not(test))]
#[inline]
pub(super) fn allowed() -> bool {
    true
}

#[cfg(test)]
thread_local! {
    static SERDE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
pub(super) fn allowed() -> bool {
    !SERDE_ONLY.with(std::cell::Cell::get)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use serde_json::{json, Value};

    use super::*;
    use crate::fhir::r4b::resources::Resource;
    use crate::fhir_stream::{write_json_exact, write_resource_exact, write_with};
    use crate::hl7v2::{split_messages, Message};
    use crate::hl7v2_fhir::{builtin_registry, BuiltinConfig};
    use crate::mapping::{MappingContext, SiteSettings, SourceMessage};

    /// `run` with the direct writer turned off on this thread.
    fn through_serde<T>(run: impl FnOnce() -> T) -> T {
        SERDE_ONLY.with(|flag| flag.set(true));
        let result = run();
        SERDE_ONLY.with(|flag| flag.set(false));
        result
    }

    /// Whether the direct writer writes this Observation itself.
    fn written_directly(observation: &Observation) -> bool {
        let mut directly = false;
        write_with(&mut Vec::new(), &[], |writer| {
            directly = writer.observation(observation).is_ok();
            Ok(())
        })
        .unwrap();
        directly
    }

    /// The resource written by `write_resource_exact` and by serde, with
    /// the same recorded texts; whether the direct writer wrote it.
    fn assert_same_as_serde(resource: &Resource, texts: &[(String, String)]) -> bool {
        let mut direct = Vec::new();
        let direct = write_resource_exact(&mut direct, resource, texts).map(|()| direct);
        let mut serde = Vec::new();
        let serde = write_json_exact(&mut serde, resource, texts).map(|()| serde);
        match (direct, serde) {
            (Ok(direct), Ok(serde)) => {
                let direct = String::from_utf8(direct).unwrap();
                assert_eq!(direct, String::from_utf8(serde).unwrap());
                assert_same_as_serde_json(&direct, resource, !texts.is_empty());
            }
            (Err(direct), Err(serde)) => assert_eq!(direct.to_string(), serde.to_string()),
            (direct, serde) => panic!("{direct:?} against {serde:?}"),
        }
        match resource {
            Resource::Observation(observation) => written_directly(observation),
            _ => false,
        }
    }

    /// `written` is what `serde_json::to_string` writes for `value`: the
    /// same bytes, unless decimal texts were recorded (`exact`). Those keep
    /// the sender's digits (`1.50`) where serde_json writes the f64's
    /// shortest form (`1.5`), so both texts are then read with every number
    /// as an f64 and compared written again (`preserve_order` keeps the
    /// members' order, which a `Value` comparison would ignore).
    fn assert_same_as_serde_json<T: Serialize>(written: &str, value: &T, exact: bool) {
        let serde = serde_json::to_string(value).unwrap();
        if !exact {
            assert_eq!(written, serde, "against serde_json::to_string");
            return;
        }
        fn numbers_as_f64(value: &mut Value) {
            match value {
                Value::Number(number) => *value = json!(number.as_f64().unwrap()),
                Value::Array(items) => items.iter_mut().for_each(numbers_as_f64),
                Value::Object(members) => members.values_mut().for_each(numbers_as_f64),
                _ => {}
            }
        }
        let normal = |text: &str| {
            let mut value: Value = serde_json::from_str(text).unwrap();
            numbers_as_f64(&mut value);
            value.to_string()
        };
        assert_eq!(
            normal(written),
            normal(&serde),
            "against serde_json::to_string"
        );
    }

    /// Draws one element's JSON.
    type Draw = fn(&mut Choices) -> Value;

    /// A deterministic choice maker (xorshift), so that one proptest seed
    /// describes a whole resource.
    struct Choices(u64);

    impl Choices {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn one_in(&mut self, n: u64) -> bool {
            self.next().is_multiple_of(n)
        }
        fn pick<T: Clone>(&mut self, items: &[T]) -> T {
            let index = usize::try_from(self.next() % items.len() as u64).unwrap();
            items[index].clone()
        }
        fn text(&mut self) -> Value {
            json!(self.pick(&[
                "plain",
                "",
                "a \"quoted\" \\ back",
                "line\nbreak\ttab\u{1}\u{1f}",
                "accentué ✓ 😀",
                "\u{2028}",
                "urn:uuid:044b1366-7b3c-8b8a-8e74-512afe3bc776",
            ]))
        }
        fn extension(&mut self) -> Value {
            json!([{"url": "http://example.org/x", "valueString": "z"}])
        }
        /// Rare unsupported parts on an element: the writer must give up.
        fn element(&mut self, mut value: Value) -> Value {
            if self.one_in(150) {
                value["id"] = json!("e1");
            }
            if self.one_in(150) {
                value["extension"] = self.extension();
            }
            value
        }
        fn coding(&mut self) -> Value {
            let mut coding = json!({});
            if !self.one_in(4) {
                coding["system"] = json!(self.pick(&["http://loinc.org", "urn:oid:1.2.250.1"]));
            }
            if self.one_in(5) {
                coding["version"] = self.text();
            }
            if !self.one_in(6) {
                coding["code"] = self.text();
            }
            if self.one_in(2) {
                coding["display"] = self.text();
            }
            if self.one_in(6) {
                coding["userSelected"] = json!(self.one_in(2));
            }
            if self.one_in(150) {
                coding["_code"] = json!({"extension": self.extension()});
            }
            self.element(coding)
        }
        fn concept(&mut self) -> Value {
            let mut concept = json!({});
            let codings: Vec<Value> = (0..self.next() % 3).map(|_| self.coding()).collect();
            if !codings.is_empty() {
                concept["coding"] = json!(codings);
            }
            if self.one_in(3) || codings.is_empty() {
                concept["text"] = self.text();
            }
            self.element(concept)
        }
        fn reference(&mut self, depth: u8) -> Value {
            let mut reference = json!({});
            if !self.one_in(5) {
                reference["reference"] = self.text();
            }
            if self.one_in(5) {
                reference["type"] = json!("Patient");
            }
            if depth > 0 && self.one_in(5) {
                reference["identifier"] = self.identifier(depth - 1);
            }
            if self.one_in(3) {
                reference["display"] = self.text();
            }
            self.element(reference)
        }
        fn identifier(&mut self, depth: u8) -> Value {
            let mut identifier = json!({});
            if self.one_in(4) {
                identifier["use"] = json!(self.pick(&["usual", "official", "secondary"]));
            }
            if self.one_in(4) {
                identifier["type"] = self.concept();
            }
            if !self.one_in(5) {
                identifier["system"] = self.text();
            }
            identifier["value"] = self.text();
            if self.one_in(6) {
                identifier["period"] = self.period();
            }
            if depth > 0 && self.one_in(6) {
                identifier["assigner"] = self.reference(depth - 1);
            }
            self.element(identifier)
        }
        fn period(&mut self) -> Value {
            let mut period = json!({});
            if !self.one_in(3) {
                period["start"] = self.date_time();
            }
            if self.one_in(2) {
                period["end"] = self.date_time();
            }
            self.element(period)
        }
        fn date_time(&mut self) -> Value {
            json!(self.pick(&[
                "2024",
                "2024-03",
                "2024-03-06",
                "2024-03-06T08:00:00+01:00",
                "2024-03-06T08:00:00.125Z",
            ]))
        }
        /// A Quantity at `pointer`, its value's text recorded when drawn.
        fn quantity(&mut self, pointer: &str, texts: &mut Vec<(String, String)>) -> Value {
            let mut quantity = json!({});
            if !self.one_in(8) {
                let (number, text) = self.pick(&[
                    (1.5, "1.50"),
                    (140.0, "140.0"),
                    (0.001, "0.0010"),
                    (-3.25, "-3.250"),
                    (1e21, "1e21"),
                    (7.0, "7"),
                ]);
                quantity["value"] = json!(number);
                if self.one_in(2) {
                    texts.push((format!("{pointer}/value"), text.to_string()));
                }
            }
            if self.one_in(5) {
                quantity["comparator"] = json!(self.pick(&["<", ">=", "<="]));
            }
            if self.one_in(2) {
                quantity["unit"] = self.text();
            }
            if self.one_in(2) {
                quantity["system"] = json!("http://unitsofmeasure.org");
                quantity["code"] = json!("mmol/L");
            }
            if self.one_in(150) {
                quantity["_value"] = json!({"extension": self.extension()});
            }
            self.element(quantity)
        }
        fn list(
            &mut self,
            most: u64,
            mut item: impl FnMut(&mut Self, usize) -> Value,
        ) -> Option<Value> {
            let count = usize::try_from(self.next() % (most + 1)).unwrap();
            (count > 0).then(|| json!((0..count).map(|i| item(self, i)).collect::<Vec<_>>()))
        }

        fn observation(&mut self) -> (Value, Vec<(String, String)>) {
            let mut texts = Vec::new();
            let mut o = json!({
                "resourceType": "Observation",
                "status": self.pick(&["final", "preliminary", "amended", "cancelled"]),
            });
            o["code"] = self.concept();
            if self.one_in(3) {
                o["id"] = json!("obs-1");
            }
            if self.one_in(8) {
                o["language"] = json!("fr-FR");
            }
            if self.one_in(30) {
                o["meta"] = json!({"versionId": "1"});
            }
            if self.one_in(30) {
                o["extension"] = self.extension();
            }
            if self.one_in(30) {
                o["_status"] = json!({"extension": self.extension()});
            }
            if self.one_in(30) {
                o["component"] = json!([{"code": {"text": "c"}, "valueString": "v"}]);
            }
            let fields: [(&str, Draw); 4] = [
                ("identifier", |c| c.identifier(2)),
                ("basedOn", |c| c.reference(1)),
                ("category", Self::concept),
                ("performer", |c| c.reference(1)),
            ];
            for (name, item) in fields {
                if let Some(list) = self.list(2, |c, _| item(c)) {
                    o[name] = list;
                }
            }
            for name in ["partOf", "focus", "hasMember", "derivedFrom"] {
                if self.one_in(6) {
                    o[name] = json!([self.reference(1)]);
                }
            }
            if !self.one_in(4) {
                o["subject"] = self.reference(1);
            }
            if self.one_in(2) {
                o["encounter"] = self.reference(1);
            }
            match self.next() % 5 {
                0 => o["effectiveDateTime"] = self.date_time(),
                1 => o["effectivePeriod"] = self.period(),
                2 => o["effectiveInstant"] = json!("2024-03-06T08:00:00.125+01:00"),
                3 if self.one_in(4) => o["effectiveTiming"] = json!({"event": ["2024-03-06"]}),
                _ => {}
            }
            if self.one_in(4) {
                o["issued"] = json!("2024-03-06T09:00:00Z");
            }
            match self.next() % 12 {
                0..=2 => o["valueQuantity"] = self.quantity("/valueQuantity", &mut texts),
                3 => o["valueCodeableConcept"] = self.concept(),
                4 => o["valueString"] = self.text(),
                5 => o["valueBoolean"] = json!(self.one_in(2)),
                6 => o["valueInteger"] = json!(self.pick(&[0, -7, 2_147_483_647])),
                7 => {
                    o["valueRange"] = json!({
                        "low": self.quantity("/valueRange/low", &mut texts),
                        "high": self.quantity("/valueRange/high", &mut texts),
                    })
                }
                8 => {
                    o["valueRatio"] = json!({
                        "numerator": self.quantity("/valueRatio/numerator", &mut texts),
                        "denominator": self.quantity("/valueRatio/denominator", &mut texts),
                    })
                }
                9 => o["valueTime"] = json!("08:30:00"),
                10 => o["valueDateTime"] = self.date_time(),
                _ if self.one_in(3) => o["valuePeriod"] = self.period(),
                _ => {}
            }
            if self.one_in(8) {
                o["dataAbsentReason"] = self.concept();
            }
            if let Some(list) = self.list(2, |c, _| c.concept()) {
                o["interpretation"] = list;
            }
            if let Some(list) = self.list(2, |c, _| {
                let mut note = json!({"text": c.text()});
                match c.next() % 4 {
                    0 => note["authorString"] = c.text(),
                    1 => note["authorReference"] = c.reference(0),
                    _ => {}
                }
                if c.one_in(3) {
                    note["time"] = c.date_time();
                }
                c.element(note)
            }) {
                o["note"] = list;
            }
            for name in ["bodySite", "method"] {
                if self.one_in(5) {
                    o[name] = self.concept();
                }
            }
            for name in ["specimen", "device"] {
                if self.one_in(4) {
                    o[name] = self.reference(0);
                }
            }
            if let Some(list) = self.list(2, |c, i| {
                let mut range = json!({});
                if c.one_in(2) {
                    range["low"] = c.quantity(&format!("/referenceRange/{i}/low"), &mut texts);
                }
                if c.one_in(2) {
                    range["high"] = c.quantity(&format!("/referenceRange/{i}/high"), &mut texts);
                }
                if c.one_in(5) {
                    range["type"] = c.concept();
                }
                if c.one_in(6) {
                    range["appliesTo"] = json!([c.concept()]);
                }
                if c.one_in(8) {
                    range["age"] = json!({"low": {"value": 18, "unit": "a"}});
                }
                if c.one_in(2) || range.as_object().is_some_and(|r| r.is_empty()) {
                    range["text"] = c.text();
                }
                c.element(range)
            }) {
                o["referenceRange"] = list;
            }
            (o, texts)
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Random Observations, some with parts the direct writer leaves
        /// to serde, some with recorded decimal texts: the same bytes as
        /// serde's.
        #[test]
        fn observations_are_written_as_serde_writes_them(seed in 1..u64::MAX) {
            let (json, texts) = Choices(seed).observation();
            let observation: Observation = serde_json::from_value(json.clone())
                .unwrap_or_else(|error| panic!("{error}: {json}"));
            assert_same_as_serde(&Resource::Observation(observation), &texts);
        }
    }

    /// Most random Observations go the direct way; the rest exercise the
    /// fallback.
    #[test]
    fn random_observations_mostly_go_the_direct_way() {
        let (mut direct, mut all) = (0, 0);
        for seed in 1..=500u64 {
            let (json, texts) = Choices(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).observation();
            let observation: Observation = serde_json::from_value(json).unwrap();
            all += 1;
            if assert_same_as_serde(&Resource::Observation(observation), &texts) {
                direct += 1;
            }
        }
        assert!(direct * 2 > all && direct < all, "{direct} of {all}");
    }

    /// `ObservationInner` has a private field, so the direct writer cannot
    /// destructure it exhaustively: a fhir-sdk upgrade that adds an
    /// Observation element changes its size and fails here. Review
    /// `JsonWriter::observation` before changing the figure.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn observation_layout_is_known() {
        assert_eq!(std::mem::size_of::<ObservationInner>(), 1464);
    }

    /// `../shared/corpus`, read in place, or `None` when it is absent (the
    /// test then says it is skipped). With PASSERELLE_REQUIRE_PEERS set (CI
    /// sets it) an absent corpus fails the test instead: a skip there would
    /// pass without having checked anything.
    fn corpus() -> Option<PathBuf> {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus"));
        if dir.is_dir() {
            return Some(dir);
        }
        assert!(
            std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
            "../shared/corpus is required (PASSERELLE_REQUIRE_PEERS is set): {} is missing",
            dir.display()
        );
        println!("skipped: ../shared/corpus not found");
        None
    }

    fn files(dir: &Path, keep: &dyn Fn(&str) -> bool, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                files(&path, keep, out);
            } else if keep(path.file_name().and_then(|n| n.to_str()).unwrap_or("")) {
                out.push(path);
            }
        }
    }

    /// Every Observation of the public FHIR examples (`../shared/corpus`),
    /// alone or in a Bundle, is written as serde writes it.
    #[test]
    fn corpus_observations_are_written_as_serde_writes_them() {
        let Some(corpus) = corpus() else {
            return;
        };
        let mut paths = Vec::new();
        files(&corpus, &|name| name.ends_with(".json"), &mut paths);
        let (mut direct, mut all) = (0, 0);
        for path in paths {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let Ok(json) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            let mut candidates = vec![json.clone()];
            if let Some(entries) = json["entry"].as_array() {
                candidates.extend(entries.iter().map(|entry| entry["resource"].clone()));
            }
            for candidate in candidates {
                if candidate["resourceType"] != "Observation" {
                    continue;
                }
                // Examples fhir-sdk's R4B model does not read are not ours.
                let Ok(observation) = serde_json::from_value::<Observation>(candidate) else {
                    continue;
                };
                all += 1;
                if assert_same_as_serde(&Resource::Observation(observation), &[]) {
                    direct += 1;
                }
            }
        }
        println!("{direct} of {all} corpus Observations written directly");
        assert!(all >= 40 && direct >= 10, "{direct} of {all}");
    }

    /// Every Bundle the built-in mappers make from the HL7 v2 samples of
    /// `../shared/corpus` is the same text as `alternative` makes it
    /// (the same mapping with an optimisation turned off); the number of
    /// Observations compared.
    fn corpus_bundles_are_the_same_with(
        alternative: impl Fn(&dyn Fn() -> Option<String>) -> Option<String>,
    ) -> usize {
        let Some(corpus) = corpus() else {
            return usize::MAX;
        };
        let mut paths = Vec::new();
        files(
            &corpus,
            &|name| {
                let lower = name.to_ascii_lowercase();
                lower.ends_with(".hl7")
                    || lower.ends_with(".er7")
                    || name.starts_with("Message metier")
            },
            &mut paths,
        );
        let registry = builtin_registry(&BuiltinConfig::default());
        let site = SiteSettings::default();
        let context = MappingContext {
            site: &site,
            now: "2026-11-23T10:00:00Z",
        };
        let mut observations = 0;
        for path in paths {
            let bytes = std::fs::read(&path).unwrap();
            for raw in split_messages(&bytes) {
                let Ok(message) = Message::parse(raw) else {
                    continue;
                };
                let map = || {
                    registry
                        .map(SourceMessage::Hl7v2(&message), &context)
                        .ok()
                        .map(|mapped| mapped.bundle)
                };
                let Some(mapped) = map() else {
                    continue;
                };
                let other = alternative(&map).unwrap_or_default();
                if mapped != other {
                    // Where they part, not two whole Bundles.
                    let at = mapped
                        .bytes()
                        .zip(other.bytes())
                        .position(|(a, b)| a != b)
                        .unwrap_or(mapped.len().min(other.len()));
                    let around = |text: &str| {
                        let mut start = at.saturating_sub(150);
                        while !text.is_char_boundary(start) {
                            start -= 1;
                        }
                        let mut end = (at + 150).min(text.len());
                        while !text.is_char_boundary(end) {
                            end += 1;
                        }
                        text[start..end].to_string()
                    };
                    panic!(
                        "{}: the Bundles differ at byte {at}:\n{}\nagainst\n{}",
                        path.display(),
                        around(&mapped),
                        around(&other)
                    );
                }
                // The Bundle is the text serde_json writes for the fhir-sdk
                // Bundle it reads as (its decimals aside), and each of its
                // resources, read back, is written by `write_resource_exact`
                // as serde_json writes it, byte for byte.
                let bundle: Resource = serde_json::from_str(&mapped)
                    .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
                assert_same_as_serde_json(&mapped, &bundle, true);
                if let Resource::Bundle(bundle) = &bundle {
                    for entry in bundle.entry.iter().flatten() {
                        if let Some(resource) = &entry.resource {
                            assert_same_as_serde(resource, &[]);
                        }
                    }
                }
                observations += mapped.matches(r#""resourceType":"Observation""#).count();
            }
        }
        observations
    }

    /// The direct writer writes the corpus Bundles as serde does.
    #[test]
    fn corpus_bundles_are_the_same_without_the_direct_writer() {
        let observations = corpus_bundles_are_the_same_with(|map| through_serde(map));
        assert!(observations >= 50, "{observations}");
    }

    /// An Observation refilled over the previous result's (see
    /// `hl7v2_fhir::elements::Spare`) is the one built afresh: nothing of
    /// one OBX is left in the next, over the corpus's ORU, MDM, ADT and
    /// SIU results of every value type.
    #[test]
    fn corpus_bundles_are_the_same_without_recycled_observations() {
        let observations = corpus_bundles_are_the_same_with(|map| {
            crate::hl7v2_fhir::elements::without_recycling(map)
        });
        assert!(observations >= 50, "{observations}");
    }
}
