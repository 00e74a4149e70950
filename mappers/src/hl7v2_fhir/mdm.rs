//! MDM (medical document management) to DocumentReference + Binary: the
//! document of the TXA with its content from OBX-5 (ED documents, RP
//! pointers, or the lines of TX/FT/ST observations), original documents
//! (T02), status changes with content (T04), replacements (T10:
//! relatesTo `replaces` the parent of TXA-13) and addenda. The ANS profile
//! "transmission of CDA R2 documents over HL7 v2" (MSH-21
//! `CISIS_CDA_HL7_V*`) sends the CDA as base64 in OBX-5: the Binary carries
//! its bytes untouched, and the profile's routing metadata (DMP, MSSanté)
//! is left out. The Patient is written only if absent.

use crate::fhir::r4b::codes;
use crate::fhir::r4b::resources::{
    DocumentReference, DocumentReferenceContext, DocumentReferenceRelatesTo, Resource,
};
use crate::fhir::r4b::types::{CodeableConcept, Identifier, Period, Reference};
use crate::fhir::ExactDecimals;
use crate::mapping::{
    MappedBundle, Mapper, MappingContext, MappingError, MappingErrorKind, MessageSelector,
    SourceMessage,
};

use super::adt::{map_encounter, EncounterStatusChoice};
use super::bundle::{Keyed, Transaction, Write, URI_SYSTEM};
use super::config::PatientWrite;
use super::datatypes::{ei_identifier, is_oid};
use super::documents::{
    carried_document, document_content, is_cisis, is_transport_metadata, visibility_labels, Carried,
};
use super::observations::{result_status, text_lines, ResultStatus};
use super::parties::{practitioner, reference, references};
use super::patient::{map_patient, PatientAdditions};
use super::support::{built, comp_of, Env, MapResult, Seg};

/// The MDM mapper.
pub(crate) struct MdmMapper;

impl Mapper for MdmMapper {
    fn name(&self) -> &str {
        "hl7v2-mdm"
    }

    fn selectors(&self) -> Vec<MessageSelector> {
        // The events with content by name; the others (addenda, edits)
        // through the fallback, which maps them when they carry content.
        vec![
            MessageSelector::hl7v2("MDM^T02"),
            MessageSelector::hl7v2("MDM^T04"),
            MessageSelector::hl7v2("MDM^T10"),
            MessageSelector::hl7v2("MDM"),
        ]
    }

    fn map(
        &self,
        message: SourceMessage<'_, '_>,
        context: &MappingContext<'_>,
    ) -> Result<MappedBundle, MappingError> {
        let SourceMessage::Hl7v2(msg) = message;
        let env = Env::new(msg, context);
        let event = msg.trigger_event();
        let txa = Seg::first(msg, "TXA").ok_or_else(|| {
            MappingError::at(
                MappingErrorKind::RequiredFieldMissing,
                "TXA",
                1,
                2,
                "a TXA segment is required",
            )
        })?;
        let cisis = is_cisis(msg);
        let observations: Vec<Seg<'_, '_>> = Seg::all(msg, "OBX")
            .into_iter()
            .filter(|obx| !is_transport_metadata(obx, cisis))
            .collect();
        let document_code = txa.text(2);
        let is_document = |obx: &Seg<'_, '_>| {
            matches!(
                obx.text(2)
                    .unwrap_or_default()
                    .to_ascii_uppercase()
                    .as_str(),
                "ED" | "RP"
            )
        };
        // The document is the ED/RP OBX of the TXA's document type when
        // there is one (CI-SIS messages carry other EDs, such as the LPS
        // e-mail body), else every ED/RP OBX.
        let documents: Vec<&Seg<'_, '_>> =
            observations.iter().filter(|obx| is_document(obx)).collect();
        let of_type: Vec<&Seg<'_, '_>> = documents
            .iter()
            .copied()
            .filter(|obx| document_code.is_some() && obx.text(3) == document_code)
            .collect();
        let chosen = if of_type.is_empty() {
            documents
        } else {
            of_type
        };
        let mut contents: Vec<(Seg<'_, '_>, Carried)> = Vec::new();
        for obx in chosen {
            if let Some(carried) = carried_document(obx)? {
                contents.push((*obx, carried));
            }
        }
        if contents.is_empty() {
            // A text report: the TX/FT/ST observations are its lines.
            let lines: Vec<(Seg<'_, '_>, String)> = observations
                .iter()
                .filter(|obx| {
                    matches!(
                        obx.text(2)
                            .unwrap_or_default()
                            .to_ascii_uppercase()
                            .as_str(),
                        "TX" | "FT" | "ST"
                    )
                })
                .filter_map(|obx| Some((*obx, text_lines(msg, &obx.field(5)?)?)))
                .collect();
            if let Some((first, _)) = lines.first() {
                let text: Vec<&str> = lines.iter().map(|(_, line)| line.as_str()).collect();
                contents.push((
                    *first,
                    Carried {
                        content_type: "text/plain".to_string(),
                        data: Some(text.join("\n").into_bytes()),
                        url: None,
                    },
                ));
            }
        }
        let Some((main, _)) = contents.first() else {
            // A notification without the document (T01, T03, T05, T07,
            // T09, T11, or an empty ED): a DocumentReference needs content,
            // and writing one without it would erase the content a server
            // already has.
            return Err(MappingError::unsupported(format!(
                "MDM^{event} without document content (OBX-5) is not mapped"
            )));
        };
        let main = *main;

        let mut tx = Transaction::default();
        let patient = map_patient(
            msg,
            &env,
            &mut tx,
            PatientWrite::CreateIfAbsent,
            PatientAdditions::default(),
        )?;
        let encounter = map_encounter(
            msg,
            &env,
            &mut tx,
            &patient.reference,
            EncounterStatusChoice::FromVisit,
            super::adt::EncounterWrite::CreateIfAbsent,
        )?;

        let number = document_number(&txa, 12, &env)?;
        let keyed = match number
            .as_ref()
            .and_then(|id| Some((id.system.clone()?, id.value.clone()?)))
        {
            Some((system, value)) => Keyed::business("DocumentReference", &system, &value),
            None => {
                let when = txa
                    .comp(6, 1)
                    .or_else(|| txa.comp(4, 1))
                    .unwrap_or_default();
                Keyed::derived(
                    "DocumentReference",
                    &[
                        &patient.reference,
                        document_code.as_deref().unwrap_or_default(),
                        &when,
                        &txa.text(1).unwrap_or_default(),
                    ],
                )
            }
        };

        let mut content = Vec::new();
        for (index, (obx, carried)) in contents.iter().enumerate() {
            content.push(Some(document_content(
                &mut tx, obx, carried, &keyed, index, cisis,
            )?));
        }

        let result = result_status(&main)?;
        let (mut status, from_result) = result.document();
        let completion = completion_status(&txa)?;
        let doc_status = match (result, completion) {
            (ResultStatus::Withdrawn, _) => Some(codes::CompositionStatus::EnteredInError),
            (ResultStatus::Corrected, Some(codes::CompositionStatus::Final)) => {
                Some(codes::CompositionStatus::Amended)
            }
            (_, Some(completion)) => Some(completion),
            (_, None) => from_result,
        };
        // TXA-19 availability (table 0273): cancelled or obsolete documents.
        match txa.text(19).map(|c| c.to_ascii_uppercase()).as_deref() {
            Some("CA") => status = codes::DocumentReferenceStatus::EnteredInError,
            Some("OB") => status = codes::DocumentReferenceStatus::Superseded,
            _ => {}
        }

        let mut builder = DocumentReference::builder()
            .status(status)
            .subject(reference(&patient.reference)?)
            .security_label(visibility_labels(msg, cisis)?)
            .content(content);
        match number {
            Some(number) => builder = builder.master_identifier(number),
            None => builder = builder.identifier(vec![Some(keyed.identifier()?)]),
        }
        if let Some(doc_status) = doc_status {
            builder = builder.doc_status(doc_status);
        }
        if let Some(kind) = document_type(&txa, &main)? {
            builder = builder.r#type(kind);
        }
        let date = match txa.instant(6, &env)? {
            Some(date) => Some(date),
            None => txa.instant(4, &env)?,
        };
        if let Some(date) = date {
            builder = builder.date(date);
        }
        let mut authors: Vec<String> = Vec::new();
        for field in [5, 9] {
            for rep in txa.repetitions(field) {
                if let Some(to) = practitioner(msg, &rep, &env, &mut tx)? {
                    if !authors.contains(&to) {
                        authors.push(to);
                    }
                }
            }
        }
        builder = builder.author(references(&authors)?);
        if let Some(field) = txa.field(22) {
            if let Some(to) = practitioner(msg, &field.repetition(1), &env, &mut tx)? {
                builder = builder.authenticator(reference(&to)?);
            }
        }
        let relation = match event.as_str() {
            "T05" | "T06" => Some(codes::DocumentRelationshipType::Appends),
            "T07" | "T08" | "T09" | "T10" => Some(codes::DocumentRelationshipType::Replaces),
            _ => None,
        };
        if let (Some(code), Some(parent)) = (relation, document_number(&txa, 13, &env)?) {
            // The parent is found by its document number, derived as for
            // TXA-12: it is not in this Bundle, so no urn:uuid can name it.
            let target = built(
                Reference::builder()
                    .r#type("DocumentReference".to_string())
                    .identifier(parent)
                    .build(),
            )?;
            builder = builder.relates_to(vec![Some(built(
                DocumentReferenceRelatesTo::builder()
                    .code(code)
                    .target(target)
                    .build(),
            )?)]);
        }
        let activity = txa.datetime(4, &env)?;
        if encounter.is_some() || activity.is_some() {
            let mut context = DocumentReferenceContext::builder();
            if let Some(encounter) = &encounter {
                context = context.encounter(vec![Some(reference(encounter)?)]);
            }
            if let Some(activity) = activity {
                context = context.period(built(Period::builder().start(activity).build())?);
            }
            builder = builder.context(built(context.build())?);
        }
        let resource = Resource::DocumentReference(built(builder.build())?);
        tx.add(
            &keyed,
            "DocumentReference",
            resource,
            ExactDecimals::default(),
            Write::Update,
        )?;
        tx.finish(Some(patient.key))
    }
}

/// A document number (TXA-12 unique document number, TXA-13 parent):
/// an OID is the identifier `urn:ietf:rfc:3986|urn:oid:...` (as IHE
/// writes document unique IDs), anything else an EI of the sender.
fn document_number(
    txa: &Seg<'_, '_>,
    n: usize,
    env: &Env<'_, '_>,
) -> MapResult<Option<Identifier>> {
    let msg = txa.msg;
    let Some(field) = txa.field(n) else {
        return Ok(None);
    };
    let rep = field.repetition(1);
    let Some(value) = comp_of(msg, &rep, 1) else {
        return Ok(None);
    };
    if is_oid(&value) {
        return built(
            Identifier::builder()
                .system(URI_SYSTEM.to_string())
                .value(format!("urn:oid:{value}"))
                .build(),
        )
        .map(Some);
    }
    ei_identifier(
        msg,
        &rep,
        env,
        Some(&super::support::default_authority(msg)),
    )
}

/// TXA-17 (table 0271): authenticated documents are final, the others
/// preliminary.
fn completion_status(txa: &Seg<'_, '_>) -> MapResult<Option<codes::CompositionStatus>> {
    let Some(code) = txa.text(17) else {
        return Ok(None);
    };
    match code.to_ascii_uppercase().as_str() {
        "AU" | "LA" => Ok(Some(codes::CompositionStatus::Final)),
        "DI" | "DO" | "IP" | "IN" | "PA" => Ok(Some(codes::CompositionStatus::Preliminary)),
        _ => Err(txa.invalid(17, "not a document completion status (HL7 table 0271)")),
    }
}

/// The document type: TXA-2, or the document's OBX-3 when it names the
/// same code (with its system and display, which TXA-2, an IS before
/// v2.7, cannot carry) or TXA-2 is empty.
fn document_type(txa: &Seg<'_, '_>, obx: &Seg<'_, '_>) -> MapResult<Option<CodeableConcept>> {
    let code = txa.text(2);
    if code.is_none() || obx.text(3) == code {
        if let Some(kind) = obx.codeable(3)? {
            return Ok(Some(kind));
        }
    }
    txa.codeable(2)
}
