//! The audit records of HL7 v2 intake, on every transport (MLLP and
//! `POST /hl7v2`): one AuditEvent per message, accepted or refused, and
//! one per patient query (QBP), in the vocabulary of
//! `passerelle_security::audit`.
//!
//! - A message taken into the journal: DICOM `Import`, subtype
//!   `hl7v2-message`, action `C`; who sent it (the client the transport
//!   established, its networks and the source address) and the message
//!   (MSH-3, MSH-4, MSH-9, MSH-10, transport, the ACK code and the SHA-256
//!   of its bytes, which with MSH-3, MSH-4 and MSH-10 names its journal
//!   row). Its patient is not known before mapping, and nothing of the
//!   message's content is copied: the delivery to the repository records
//!   the `Patient/{id}` it was stored under.
//! - A message refused before the journal (AR, or AE when the journal
//!   cannot take it): the same, with what could be read of its header and
//!   the fixed reason of the refusal.
//! - A query: DICOM `Query`, subtype IHE `ITI-21` (QBP^Q22) or `ITI-9`
//!   (QBP^Q23), action `E`; the client, the query's parameter names with
//!   every value masked, and the patients of the answer as `Patient/{id}`.
//! - A file (HPRIM Santé, HPRIM Net), journaled or refused: DICOM
//!   `Import`, subtype `file`; who sent it (none for the watched
//!   directory), its format, sender code, size and SHA-256.

use std::net::IpAddr;

use passerelle_security::audit::{
    agents, bounded, roles, types, Action, Agent, Code, Entity, Event, Outcome, IHE_EVENT_TYPE,
    PASSERELLE_SUBTYPE,
};
use passerelle_security::Client;
use passerelle_storage::audit::AuditRecord;
use passerelle_storage::{instant_from_ms, now_ms};

use super::acks::Header;
use super::{AckCode, Transport};

const HL7V2_MESSAGE: Code = Code::new(
    PASSERELLE_SUBTYPE,
    "hl7v2-message",
    "HL7 v2 message received",
);
const PDQ: Code = Code::new(IHE_EVENT_TYPE, "ITI-21", "Patient Demographics Query");
const PIX: Code = Code::new(IHE_EVENT_TYPE, "ITI-9", "PIX Query");

/// Longest header value kept (MSH-10 is 20 characters, MSH-3 and MSH-4 a
/// few components).
const MAX_FIELD: usize = 200;

/// Where a message came from.
#[derive(Clone, Copy)]
pub(crate) struct Origin<'a> {
    pub transport: Transport,
    pub source: Option<IpAddr>,
    /// The client it was taken to come from (none: nobody the gateway knows).
    pub sender: Option<&'a Client>,
}

impl Origin<'_> {
    fn agent(&self, kind: Code) -> Agent {
        let source = self.source.map(|address| address.to_string());
        match self.sender {
            Some(client) => Agent::client(kind, &client.name, &client.networks, source),
            None => Agent::client(kind, "(unknown sender)", &[], source),
        }
    }
}

/// The header facts a record names: those read, or (for a message refused
/// before its header was accepted) what a lenient reading found.
pub(crate) struct Facts {
    pub sending_application: String,
    pub sending_facility: String,
    pub message_type: String,
    pub control_id: String,
}

impl Facts {
    pub fn of(header: &Header) -> Facts {
        Facts {
            sending_application: header.sending_application.clone(),
            sending_facility: header.sending_facility.clone(),
            message_type: header.message_type.clone(),
            control_id: header.control_id.clone(),
        }
    }

    /// What can be read of a refused message's MSH (nothing when it has
    /// none): the reply builder's lenient parse.
    pub fn read(raw: &[u8]) -> Facts {
        let message = hl7v2::Message::parse(raw)
            .ok()
            .or_else(|| hl7v2::Message::parse_for_reply(raw));
        match message {
            Some(message) => Facts {
                sending_application: message.sending_application(),
                sending_facility: message.sending_facility(),
                message_type: match (message.message_type(), message.trigger_event()) {
                    (kind, event) if event.is_empty() => kind,
                    (kind, event) => format!("{kind}^{event}"),
                },
                control_id: message.control_id(),
            },
            None => Facts {
                sending_application: String::new(),
                sending_facility: String::new(),
                message_type: String::new(),
                control_id: String::new(),
            },
        }
    }

    fn entity(&self, transport: Transport) -> Entity {
        let message_type = bounded(&self.message_type, MAX_FIELD);
        let description = if message_type.is_empty() {
            format!("HL7 v2 message over {}", transport.label())
        } else {
            format!("HL7 v2 {message_type} over {}", transport.label())
        };
        Entity::new(Some(roles::REPORT), description)
            .identified(bounded(&self.control_id, MAX_FIELD))
            .detail("MSH-3", bounded(&self.sending_application, MAX_FIELD))
            .detail("MSH-4", bounded(&self.sending_facility, MAX_FIELD))
            .detail("MSH-9", message_type)
            .detail("MSH-10", bounded(&self.control_id, MAX_FIELD))
            .detail("transport", transport.label())
    }
}

/// The outcome an acknowledgement code stands for: accepted, refused for
/// good (the sender's to fix), or not taken for now (an error of ours).
fn outcome_of(code: AckCode) -> Outcome {
    match code {
        AckCode::AA | AckCode::CA => Outcome::Success,
        AckCode::AR | AckCode::CR => Outcome::MinorFailure,
        _ => Outcome::SeriousFailure,
    }
}

fn record(recorded_ms: i64, event: Event) -> AuditRecord {
    AuditRecord {
        recorded_ms,
        patients: event.patient_references(),
        event: event.to_json(),
    }
}

fn event(kind: Code, subtype: Code, action: Action) -> (i64, Event) {
    let now = now_ms();
    (now, Event::new(kind, subtype, action, instant_from_ms(now)))
}

/// The record of a message submitted to the journal with it: answered
/// `code` once the journal has it (`after_mapping`: once it is mapped).
pub(crate) fn journaled(
    origin: Origin<'_>,
    facts: &Facts,
    sha256: &str,
    code: AckCode,
    after_mapping: bool,
) -> AuditRecord {
    let (recorded_ms, event) = event(types::IMPORT, HL7V2_MESSAGE, Action::Create);
    let said = if after_mapping {
        "journaled; acknowledged after its mapping".to_string()
    } else {
        format!("journaled before its acknowledgement ({})", code.as_str())
    };
    let event = event
        .outcome(Outcome::Success, said)
        .agent(origin.agent(agents::SOURCE))
        .entity(
            facts
                .entity(origin.transport)
                .detail("acknowledgement", code.as_str())
                .detail("SHA-256", sha256),
        );
    record(recorded_ms, event)
}

/// The record of a message refused before (or by a failure of) the
/// journal, answered `code` for `reason` (fixed wording).
pub(crate) fn refused(
    origin: Origin<'_>,
    facts: &Facts,
    code: AckCode,
    reason: &str,
) -> AuditRecord {
    let (recorded_ms, event) = event(types::IMPORT, HL7V2_MESSAGE, Action::Create);
    let event = event
        .outcome(
            outcome_of(code),
            format!("refused ({}): {reason}", code.as_str()),
        )
        .agent(origin.agent(agents::SOURCE))
        .entity(
            facts
                .entity(origin.transport)
                .detail("acknowledgement", code.as_str()),
        );
    record(recorded_ms, event)
}

/// What a patient query's answer said, for its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryAudit {
    /// `Patient/{id}` of every patient in the answer.
    pub patients: Vec<String>,
    pub outcome: Outcome,
    /// Fixed wording and counts only.
    pub description: String,
    /// The query's parameter names, every value masked (`@PID.5.1=***`).
    pub masked_query: String,
}

/// The record of a QBP^Q22 or QBP^Q23 answered.
pub(crate) fn query(origin: Origin<'_>, facts: &Facts, answered: &QueryAudit) -> AuditRecord {
    let subtype = if facts.message_type.starts_with("QBP^Q23") {
        PIX
    } else {
        PDQ
    };
    let (recorded_ms, event) = event(types::QUERY, subtype, Action::Execute);
    let message_type = bounded(&facts.message_type, MAX_FIELD);
    let event = event
        .outcome(answered.outcome, answered.description.clone())
        .agent(origin.agent(agents::RECIPIENT))
        .patients(&answered.patients)
        .entity(
            Entity::query(
                format!("HL7 v2 {message_type} over {}", origin.transport.label()),
                Some(answered.masked_query.clone()),
            )
            .identified(bounded(&facts.control_id, MAX_FIELD))
            .detail("MSH-3", bounded(&facts.sending_application, MAX_FIELD))
            .detail("MSH-10", bounded(&facts.control_id, MAX_FIELD)),
        );
    record(recorded_ms, event)
}

const FILE_RECEIVED: Code = Code::new(PASSERELLE_SUBTYPE, "file", "File received");

/// What the records of a file name: its format, its sender's code, size
/// and SHA-256 (which with the sender names its journal row); nothing of
/// its content.
pub(crate) struct FileFacts {
    pub format: &'static str,
    pub message_type: String,
    pub sender: String,
    pub sha256: String,
    pub bytes: usize,
}

impl FileFacts {
    fn entity(&self, transport: Transport) -> Entity {
        Entity::new(
            Some(roles::REPORT),
            format!("{} file over {}", self.format, transport.label()),
        )
        .identified(self.sha256.clone())
        .detail("sender", bounded(&self.sender, MAX_FIELD))
        .detail("type", self.message_type.clone())
        .detail("bytes", self.bytes.to_string())
        .detail("SHA-256", self.sha256.clone())
        .detail("transport", transport.label())
    }
}

/// The record of a file committed to the journal with it.
pub(crate) fn file_journaled(
    origin: Origin<'_>,
    facts: &FileFacts,
    patients: usize,
) -> AuditRecord {
    let (recorded_ms, event) = event(types::IMPORT, FILE_RECEIVED, Action::Create);
    let event = event
        .outcome(
            Outcome::Success,
            format!("journaled ({patients} patient(s))"),
        )
        .agent(origin.agent(agents::SOURCE))
        .entity(facts.entity(origin.transport));
    record(recorded_ms, event)
}

/// The record of a file refused before the journal, for `reason` (the
/// parser's words, which never quote the file).
pub(crate) fn file_refused(origin: Origin<'_>, facts: &FileFacts, reason: &str) -> AuditRecord {
    let (recorded_ms, event) = event(types::IMPORT, FILE_RECEIVED, Action::Create);
    let event = event
        .outcome(
            Outcome::MinorFailure,
            format!("refused: {}", bounded(reason, 500)),
        )
        .agent(origin.agent(agents::SOURCE))
        .entity(facts.entity(origin.transport));
    record(recorded_ms, event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use passerelle_security::{Hl7Senders, Scopes};
    use serde_json::Value;

    fn lab() -> Client {
        Client {
            name: "lab".into(),
            networks: vec!["nord".into()],
            scopes: Scopes::parse(&["passerelle/hl7v2"]).unwrap(),
            mllp_addresses: Vec::new(),
            certificate_names: Vec::new(),
            hl7_senders: Hl7Senders::default(),
        }
    }

    const MESSAGE: &str = "MSH|^~\\&|LAB|SITE|GW|GW|20261204||ORU^R01^ORU_R01|CTRL-7|P|2.5\r\
                           PID|1||279035121518989^^^INS||DUPONT^JEAN||19800101|M\r";

    #[test]
    fn a_message_record_names_its_sender_and_header_and_no_patient_data() {
        let client = lab();
        let origin = Origin {
            transport: Transport::Mllp,
            source: Some("10.1.2.3".parse().unwrap()),
            sender: Some(&client),
        };
        let facts = Facts::read(MESSAGE.as_bytes());
        let record = journaled(origin, &facts, "abcd", AckCode::AA, false);
        assert!(record.patients.is_empty());
        let event: Value = serde_json::from_str(&record.event).unwrap();
        assert_eq!(event["type"]["code"], "110107");
        assert_eq!(event["subtype"][0]["code"], "hl7v2-message");
        assert_eq!(event["action"], "C");
        assert_eq!(event["outcome"], "0");
        assert_eq!(event["agent"][0]["who"]["display"], "lab");
        assert_eq!(event["agent"][0]["altId"], "nord");
        assert_eq!(event["agent"][0]["network"]["address"], "10.1.2.3");
        let message = &event["entity"][0];
        assert_eq!(message["what"]["identifier"]["value"], "CTRL-7");
        let detail = |kind: &str| {
            message["detail"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["type"] == kind)
                .map(|d| d["valueString"].as_str().unwrap().to_string())
        };
        assert_eq!(detail("MSH-9").unwrap(), "ORU^R01");
        assert_eq!(detail("MSH-10").unwrap(), "CTRL-7");
        assert_eq!(detail("MSH-3").unwrap(), "LAB");
        assert_eq!(detail("acknowledgement").unwrap(), "AA");
        for secret in ["279035121518989", "DUPONT", "19800101"] {
            assert!(!record.event.contains(secret), "{}", record.event);
        }
    }

    #[test]
    fn a_refusal_record_says_who_and_why() {
        let origin = Origin {
            transport: Transport::Http,
            source: None,
            sender: None,
        };
        let record = refused(
            origin,
            &Facts::read(MESSAGE.as_bytes()),
            AckCode::AR,
            "sender not allowed",
        );
        let event: Value = serde_json::from_str(&record.event).unwrap();
        assert_eq!(event["outcome"], "4");
        assert_eq!(event["outcomeDesc"], "refused (AR): sender not allowed");
        assert_eq!(event["agent"][0]["who"]["display"], "(unknown sender)");
        // Nothing readable: still a record, of a message without header.
        let garbage = refused(
            origin,
            &Facts::read(b"not hl7 at all"),
            AckCode::AR,
            "unreadable MSH",
        );
        let event: Value = serde_json::from_str(&garbage.event).unwrap();
        assert_eq!(
            event["entity"][0]["description"],
            "HL7 v2 message over http"
        );
    }
}
