//! From the element tree to the model: the header's participations, the
//! body (level 1 or 3) and the CR-BIO result entries. Narrative references
//! (`originalText/reference`, a comment's `text/reference`) are resolved
//! to the text of the narrative element with that `ID`.

use std::collections::HashMap;

use crate::error::{CdaError, CdaErrorKind};
use crate::model::*;
use crate::xml::{self, Element, Limits};

/// Reads a CDA R2 document within the default [`Limits`].
pub fn read(bytes: &[u8]) -> Result<Document, CdaError> {
    read_with_limits(bytes, &Limits::default())
}

/// Reads a CDA R2 document within `limits`.
pub fn read_with_limits(bytes: &[u8], limits: &Limits) -> Result<Document, CdaError> {
    read_element(&xml::parse(bytes, limits)?)
}

/// Reads a CDA R2 document already parsed (its root element), for a
/// caller that also reads parts the model does not hold.
pub fn read_element(root: &Element) -> Result<Document, CdaError> {
    if !root.is("ClinicalDocument") {
        return Err(CdaError {
            kind: CdaErrorKind::NotClinicalDocument,
            line: root.line,
            column: 1,
            path: format!("/{}", root.name.name),
        });
    }
    let reader = Reader::new(root);
    let header = reader.header(root);
    let structured = root.at(&["component", "structuredBody"]);
    let body = match (structured, root.at(&["component", "nonXMLBody"])) {
        (Some(body), _) => Body::Structured(
            body.all("component")
                .filter_map(|c| c.child("section"))
                .map(|s| reader.section(s))
                .collect(),
        ),
        (None, Some(body)) => Body::NonXml(non_xml_body(body)),
        (None, None) => Body::Missing,
    };
    let mut document = Document {
        header,
        body,
        lab: None,
    };
    if let (true, Some(body)) = (document.is_lab_report(), structured) {
        let mut lab = LabReport::default();
        for section in body.all("component").filter_map(|c| c.child("section")) {
            reader.lab_section(section, None, &mut lab);
        }
        document.lab = Some(lab);
    }
    Ok(document)
}

fn non_xml_body(body: &Element) -> NonXmlBody {
    let text = body.child("text");
    NonXmlBody {
        media_type: text.and_then(|t| t.attr("mediaType")).map(str::to_string),
        representation: text
            .and_then(|t| t.attr("representation"))
            .map(str::to_string),
        compression: text.and_then(|t| t.attr("compression")).map(str::to_string),
        content: text
            .map(|t| {
                t.children
                    .iter()
                    .filter_map(|n| match n {
                        xml::Node::Text(text) => Some(text.as_str()),
                        xml::Node::Element(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        reference: text
            .and_then(|t| t.child("reference"))
            .and_then(|r| r.attr("value"))
            .map(str::to_string),
    }
}

fn attr(element: Option<&Element>, name: &str) -> Option<String> {
    element.and_then(|e| e.attr(name)).map(str::to_string)
}

fn instance_id(element: &Element) -> InstanceId {
    InstanceId {
        root: element.attr("root").map(str::to_string),
        extension: element.attr("extension").map(str::to_string),
        null_flavor: element.attr("nullFlavor").map(str::to_string),
    }
}

fn ids(element: &Element) -> Vec<InstanceId> {
    element.all("id").map(instance_id).collect()
}

fn names(element: &Element) -> Vec<PersonName> {
    element.all("name").map(person_name).collect()
}

fn person_name(name: &Element) -> PersonName {
    let part = |e: &Element| {
        e.clean_text().map(|text| NamePart {
            text,
            qualifier: e.attr("qualifier").map(str::to_string),
        })
    };
    let has_parts = name.elements().next().is_some();
    PersonName {
        use_code: name.attr("use").map(str::to_string),
        family: name.all("family").filter_map(part).collect(),
        given: name.all("given").filter_map(part).collect(),
        prefix: name.all("prefix").filter_map(Element::clean_text).collect(),
        suffix: name.all("suffix").filter_map(Element::clean_text).collect(),
        text: if has_parts { None } else { name.clean_text() },
    }
}

fn address(addr: &Element) -> Address {
    let mut lines: Vec<String> = addr
        .all("streetAddressLine")
        .filter_map(Element::clean_text)
        .collect();
    let street: Vec<String> = [
        "houseNumber",
        "houseNumberNumeric",
        "streetNameType",
        "streetName",
    ]
    .iter()
    .filter_map(|n| addr.child(n).and_then(Element::clean_text))
    .collect();
    if !street.is_empty() {
        lines.push(street.join(" "));
    }
    for extra in ["unitID", "additionalLocator", "postBox", "precinct"] {
        lines.extend(addr.all(extra).filter_map(Element::clean_text));
    }
    Address {
        use_code: addr.attr("use").map(str::to_string),
        lines,
        postal_code: addr.child("postalCode").and_then(Element::clean_text),
        city: addr.child("city").and_then(Element::clean_text),
        country: addr.child("country").and_then(Element::clean_text),
    }
}

fn addresses(element: &Element) -> Vec<Address> {
    element
        .all("addr")
        .map(address)
        .filter(|a| !a.lines.is_empty() || a.city.is_some() || a.postal_code.is_some())
        .collect()
}

fn telecoms(element: &Element) -> Vec<Telecom> {
    element
        .all("telecom")
        .filter_map(|t| {
            t.attr("value").map(|value| Telecom {
                value: value.to_string(),
                use_code: t.attr("use").map(str::to_string),
            })
        })
        .collect()
}

fn organization(element: &Element) -> Organization {
    Organization {
        ids: ids(element),
        name: element.child("name").and_then(Element::clean_text),
        telecoms: telecoms(element),
        addresses: addresses(element),
    }
}

/// A TS's value, or an IVL_TS's low (else center, else high).
fn time(element: Option<&Element>) -> Option<String> {
    let element = element?;
    attr(Some(element), "value")
        .or_else(|| attr(element.child("low"), "value"))
        .or_else(|| attr(element.child("center"), "value"))
        .or_else(|| attr(element.child("high"), "value"))
}

fn low_high(element: Option<&Element>) -> (Option<String>, Option<String>) {
    let Some(element) = element else {
        return (None, None);
    };
    match element.attr("value") {
        Some(value) => (Some(value.to_string()), None),
        None => (
            attr(element.child("low"), "value"),
            attr(element.child("high"), "value"),
        ),
    }
}

struct Reader<'t> {
    /// Narrative elements by `ID`, for references.
    by_id: HashMap<&'t str, &'t Element>,
}

impl<'t> Reader<'t> {
    fn new(root: &'t Element) -> Self {
        let mut by_id = HashMap::new();
        for element in root.descendants() {
            if let Some(id) = element.attr("ID") {
                by_id.entry(id).or_insert(element);
            }
        }
        Reader { by_id }
    }

    /// The text a `reference/@value` (`#id`) points at.
    fn referenced(&self, reference: Option<&Element>) -> Option<String> {
        let value = reference?.attr("value")?;
        let id = value.strip_prefix('#').unwrap_or(value);
        self.by_id.get(id).and_then(|e| e.clean_text())
    }

    /// A text element's own text, or the narrative it references.
    fn text_of(&self, element: Option<&Element>) -> Option<String> {
        let element = element?;
        self.referenced(element.child("reference"))
            .or_else(|| element.clean_text())
    }

    fn code(&self, element: &Element) -> Code {
        Code {
            code: element.attr("code").map(str::to_string),
            system: element.attr("codeSystem").map(str::to_string),
            system_name: element.attr("codeSystemName").map(str::to_string),
            display: element.attr("displayName").map(str::to_string),
            original_text: self.text_of(element.child("originalText")),
            translations: element.all("translation").map(|t| self.code(t)).collect(),
            null_flavor: element.attr("nullFlavor").map(str::to_string),
        }
    }

    fn code_of(&self, element: Option<&Element>) -> Option<Code> {
        element.map(|e| self.code(e))
    }

    fn party(&self, entity: &Element) -> Party {
        let person = entity
            .child("assignedPerson")
            .or_else(|| entity.child("associatedPerson"));
        let device = entity.child("assignedAuthoringDevice").and_then(|d| {
            d.child("softwareName")
                .or_else(|| d.child("manufacturerModelName"))
                .and_then(Element::clean_text)
        });
        Party {
            ids: ids(entity),
            code: self.code_of(entity.child("code")),
            names: person.map(names).unwrap_or_default(),
            device,
            addresses: addresses(entity),
            telecoms: telecoms(entity),
            organization: entity
                .child("representedOrganization")
                .or_else(|| entity.child("scopingOrganization"))
                .map(organization),
        }
    }

    fn participation(&self, element: &Element, entity: &str) -> Participation {
        Participation {
            time: time(element.child("time")),
            party: element
                .child(entity)
                .map(|e| self.party(e))
                .unwrap_or_default(),
        }
    }

    fn patient(&self, role: &Element) -> Patient {
        let person = role.child("patient");
        Patient {
            ids: ids(role),
            names: person.map(names).unwrap_or_default(),
            gender: attr(
                person.and_then(|p| p.child("administrativeGenderCode")),
                "code",
            ),
            birth_time: attr(person.and_then(|p| p.child("birthTime")), "value"),
            addresses: addresses(role),
            telecoms: telecoms(role),
        }
    }

    fn header(&self, root: &Element) -> Header {
        let encounter = root.at(&["componentOf", "encompassingEncounter"]).map(|e| {
            let facility = e.at(&["location", "healthCareFacility"]);
            let (low, high) = low_high(e.child("effectiveTime"));
            Encounter {
                ids: ids(e),
                code: self.code_of(e.child("code")),
                low,
                high,
                facility_code: self.code_of(facility.and_then(|f| f.child("code"))),
                location_name: facility
                    .and_then(|f| f.at(&["location", "name"]))
                    .and_then(Element::clean_text),
                service_provider: facility
                    .and_then(|f| f.child("serviceProviderOrganization"))
                    .map(organization),
            }
        });
        Header {
            realm: attr(root.child("realmCode"), "code"),
            template_ids: root.all("templateId").map(instance_id).collect(),
            id: root.child("id").map(instance_id),
            code: self.code_of(root.child("code")),
            title: root.child("title").and_then(Element::clean_text),
            effective_time: attr(root.child("effectiveTime"), "value"),
            confidentiality: self.code_of(root.child("confidentialityCode")),
            language: attr(root.child("languageCode"), "code"),
            set_id: root.child("setId").map(instance_id),
            version_number: attr(root.child("versionNumber"), "value"),
            record_targets: root
                .all("recordTarget")
                .filter_map(|r| r.child("patientRole"))
                .map(|r| self.patient(r))
                .collect(),
            authors: root
                .all("author")
                .map(|a| self.participation(a, "assignedAuthor"))
                .collect(),
            custodian: root
                .at(&[
                    "custodian",
                    "assignedCustodian",
                    "representedCustodianOrganization",
                ])
                .map(organization),
            legal_authenticator: root
                .child("legalAuthenticator")
                .map(|a| self.participation(a, "assignedEntity")),
            authenticators: root
                .all("authenticator")
                .map(|a| self.participation(a, "assignedEntity"))
                .collect(),
            related_documents: root
                .all("relatedDocument")
                .map(|r| {
                    let parent = r.child("parentDocument");
                    RelatedDocument {
                        type_code: r.attr("typeCode").map(str::to_string),
                        parent_ids: parent.map(ids).unwrap_or_default(),
                        parent_set_id: parent.and_then(|p| p.child("setId")).map(instance_id),
                        parent_version: attr(
                            parent.and_then(|p| p.child("versionNumber")),
                            "value",
                        ),
                    }
                })
                .collect(),
            service_events: root
                .all("documentationOf")
                .filter_map(|d| d.child("serviceEvent"))
                .map(|s| {
                    let (low, high) = low_high(s.child("effectiveTime"));
                    ServiceEvent {
                        ids: ids(s),
                        code: self.code_of(s.child("code")),
                        low,
                        high,
                    }
                })
                .collect(),
            encounter,
        }
    }

    fn section(&self, section: &Element) -> Section {
        Section {
            template_ids: section.all("templateId").map(instance_id).collect(),
            code: self.code_of(section.child("code")),
            title: section.child("title").and_then(Element::clean_text),
            entry_count: section.all("entry").count(),
            sections: section
                .all("component")
                .filter_map(|c| c.child("section"))
                .map(|s| self.section(s))
                .collect(),
        }
    }

    /// The result entries of a section and its subsections. The PDF copy
    /// section (`FR-Document-PDF-copie`, LOINC 55108-5) holds the rendered
    /// document, not results.
    fn lab_section(&self, section: &Element, chapter: Option<&Code>, lab: &mut LabReport) {
        let code = self.code_of(section.child("code"));
        if code.as_ref().and_then(|c| c.code.as_deref()) == Some("55108-5") {
            return;
        }
        let chapter = chapter.cloned().or(code);
        for entry in section.all("entry") {
            let context = Context {
                chapter: chapter.as_ref(),
                ..Context::default()
            };
            for element in entry
                .elements()
                .filter(|e| e.name.namespace.as_deref() == Some(xml::HL7_V3))
            {
                self.lab_element(element, &context, lab, None);
            }
        }
        for sub in section.all("component").filter_map(|c| c.child("section")) {
            self.lab_section(sub, chapter.as_ref(), lab);
        }
    }

    /// One act, organizer, procedure or observation of a result entry;
    /// returns the index of an observation read.
    fn lab_element(
        &self,
        element: &Element,
        context: &Context<'_>,
        lab: &mut LabReport,
        parent: Option<usize>,
    ) -> Option<usize> {
        if element.is("observation") {
            return Some(self.lab_observation(element, context, lab));
        }
        if element.is("act") {
            if let Some(comment) = self.comment(element) {
                match parent {
                    Some(index) => {
                        if let Some(observation) = lab.observations.get_mut(index) {
                            observation.comments.push(comment);
                        }
                    }
                    None => lab.comments.push(comment),
                }
                return None;
            }
            // Specimen collection procedures first: results of the act
            // refer to the sample they describe.
            let mut context = context.clone();
            for procedure in element
                .all("entryRelationship")
                .filter_map(|r| r.child("procedure"))
            {
                context.specimen = Some(self.collection(procedure, lab));
            }
            for related in element.all("entryRelationship") {
                for child in related.elements().filter(|e| !e.is("procedure")) {
                    self.lab_element(child, &context, lab, parent);
                }
            }
            return None;
        }
        if element.is("organizer") {
            let mut context = context.clone();
            if let Some(role) = element.at(&["specimen", "specimenRole"]) {
                let entity = role.child("specimenPlayingEntity");
                lab.specimens.push(Specimen {
                    ids: ids(role),
                    type_code: self.code_of(entity.and_then(|e| e.child("code"))),
                    class_code: attr(entity, "classCode"),
                    collected: time(element.child("effectiveTime")),
                    received: None,
                    body_site: None,
                    parent: context.specimen,
                });
                context.specimen = Some(lab.specimens.len() - 1);
            }
            if let Some(code) = self
                .code_of(element.child("code"))
                .filter(|c| c.code.is_some())
            {
                context.battery = Some(code);
            }
            for component in element.all("component") {
                for child in component.elements() {
                    self.lab_element(child, &context, lab, parent);
                }
            }
            return None;
        }
        if element.is("procedure") {
            self.collection(element, lab);
        }
        None
    }

    /// A comment act (LOINC 48767-8): its text.
    fn comment(&self, act: &Element) -> Option<String> {
        let code = act.child("code")?;
        if code.attr("code") != Some("48767-8") {
            return None;
        }
        self.text_of(act.child("text"))
    }

    /// A specimen collection procedure as a specimen; returns its index.
    fn collection(&self, procedure: &Element, lab: &mut LabReport) -> usize {
        let role = procedure
            .all("participant")
            .filter_map(|p| p.child("participantRole"))
            .find(|r| r.attr("classCode") == Some("SPEC"));
        let received = procedure
            .all("entryRelationship")
            .filter_map(|r| r.child("act"))
            .find(|a| attr(a.child("code"), "code").as_deref() == Some("SPRECEIVE"))
            .and_then(|a| time(a.child("effectiveTime")));
        let (low, high) = low_high(procedure.child("effectiveTime"));
        lab.specimens.push(Specimen {
            ids: role.map(ids).unwrap_or_default(),
            type_code: self.code_of(role.and_then(|r| r.at(&["playingEntity", "code"]))),
            class_code: None,
            collected: high.or(low),
            received,
            body_site: self.code_of(procedure.child("targetSiteCode")),
            parent: None,
        });
        lab.specimens.len() - 1
    }

    fn lab_observation(
        &self,
        element: &Element,
        context: &Context<'_>,
        lab: &mut LabReport,
    ) -> usize {
        let observation = LabObservation {
            ids: ids(element),
            code: element
                .child("code")
                .map(|c| self.code(c))
                .unwrap_or_default(),
            status: attr(element.child("statusCode"), "code"),
            effective_time: time(element.child("effectiveTime")),
            value: element.child("value").map(|v| self.value(v)),
            interpretations: element
                .all("interpretationCode")
                .map(|c| self.code(c))
                .collect(),
            method: self.code_of(element.child("methodCode")),
            reference_ranges: element
                .all("referenceRange")
                .filter_map(|r| r.child("observationRange"))
                .map(|range| ReferenceRange {
                    value: range.child("value").map(|v| self.value(v)),
                    interpretation: self.code_of(range.child("interpretationCode")),
                    text: self.text_of(range.child("text")),
                })
                .collect(),
            comments: Vec::new(),
            specimen: context.specimen,
            battery: context.battery.clone(),
            chapter: context.chapter.cloned(),
            members: Vec::new(),
            line: element.line,
        };
        lab.observations.push(observation);
        let index = lab.observations.len() - 1;
        for related in element.all("entryRelationship") {
            for child in related.elements() {
                if let Some(member) = self.lab_element(child, context, lab, Some(index)) {
                    if let Some(observation) = lab.observations.get_mut(index) {
                        observation.members.push(member);
                    }
                }
            }
        }
        index
    }

    fn quantity(element: Option<&Element>) -> Quantity {
        Quantity {
            value: attr(element, "value"),
            unit: attr(element, "unit"),
            null_flavor: attr(element, "nullFlavor"),
        }
    }

    fn bound(element: Option<&Element>) -> Option<Bound> {
        let element = element?;
        Some(Bound {
            quantity: Self::quantity(Some(element)),
            inclusive: element.attr("inclusive") != Some("false"),
        })
    }

    /// A value by its `xsi:type` (resolved, so `v3:PQ` is `PQ`).
    fn value(&self, value: &Element) -> Value {
        match value.hl7_type() {
            Some("PQ") => Value::Quantity(Self::quantity(Some(value))),
            Some("IVL_PQ") => Value::Interval {
                low: Self::bound(value.child("low")),
                high: Self::bound(value.child("high")),
            },
            Some(kind) if kind.starts_with("RTO") => Value::Ratio {
                numerator: Self::quantity(value.child("numerator")),
                denominator: Self::quantity(value.child("denominator")),
            },
            Some("ST") | Some("SC") | Some("ED") => {
                Value::Text(self.text_of(Some(value)).unwrap_or_default())
            }
            Some("CD") | Some("CE") | Some("CV") | Some("CO") | Some("CS") => {
                Value::Coded(self.code(value))
            }
            Some("INT") => Value::Integer(value.attr("value").unwrap_or_default().to_string()),
            Some("REAL") => Value::Real(value.attr("value").unwrap_or_default().to_string()),
            Some("BL") => Value::Boolean(value.attr("value").unwrap_or_default().to_string()),
            Some("TS") => Value::Time(value.attr("value").unwrap_or_default().to_string()),
            other => Value::Other {
                type_name: other
                    .map(str::to_string)
                    .or_else(|| value.xsi_type.as_ref().map(|t| t.name.clone()))
                    .unwrap_or_default(),
                text: self.text_of(Some(value)),
            },
        }
    }
}

/// What a result inherits from the entries around it.
#[derive(Debug, Clone, Default)]
struct Context<'c> {
    chapter: Option<&'c Code>,
    battery: Option<Code>,
    specimen: Option<usize>,
}
