//! The vocabulary of the audit trail: FHIR R4 `AuditEvent`s shaped as IHE
//! BALP (Basic Audit Log Patterns) and the DICOM audit vocabulary IHE
//! ATNA uses, built in one place for every part of the gateway that
//! records: the HTTP API (`passerelle_http::audit`), HL7 v2 intake over
//! MLLP and HTTP (`passerelle_intake::audit`), deliveries
//! (`passerelle_delivery::audit`) and the command line. Each builds an
//! [`Event`] from these parts and gets its JSON text, which the store's
//! hash-chained trail keeps (`passerelle_storage::audit`).
//!
//! A trail must not spread identities: patients appear only as
//! `Patient/{id}` references to the repository's records ([`Event::patient`]),
//! queries with their values masked, and never a name, a birth date or an
//! identifier's value.

/// A coding of this vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub system: &'static str,
    pub code: &'static str,
    /// Empty: no display.
    pub display: &'static str,
}

impl Code {
    pub const fn new(system: &'static str, code: &'static str, display: &'static str) -> Code {
        Code {
            system,
            code,
            display,
        }
    }

    fn write(self, json: &mut JsonWriter, key: Option<&str>) {
        let mark = json.open_object(key);
        json.string("system", self.system);
        json.string("code", self.code);
        json.string("display", self.display);
        json.close_object(mark);
    }
}

pub const DICOM: &str = "http://dicom.nema.org/resources/ontology/DCM";
pub const AUDIT_EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
pub const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
pub const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
pub const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
pub const PARTICIPATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
pub const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
/// IHE transactions (`ITI-21`, …) as event subtypes.
pub const IHE_EVENT_TYPE: &str = "urn:ihe:event-type-code";
/// Subtypes of the gateway's own (`export`, `erase`, `hl7v2-message`, …).
pub const PASSERELLE_SUBTYPE: &str = "urn:passerelle:audit-subtype";

/// Event types (`AuditEvent.type`).
pub mod types {
    use super::{Code, AUDIT_EVENT_TYPE, DICOM};

    /// BALP's RESTful events (the HTTP API).
    pub const REST: Code = Code::new(AUDIT_EVENT_TYPE, "rest", "RESTful Operation");
    /// Data taken into the gateway (an HL7 v2 message, a restored store).
    pub const IMPORT: Code = Code::new(DICOM, "110107", "Import");
    /// Data sent out of the gateway (a delivery, a backup).
    pub const EXPORT: Code = Code::new(DICOM, "110106", "Export");
    /// A query answered (HL7 v2 QBP).
    pub const QUERY: Code = Code::new(DICOM, "110112", "Query");
    /// A patient's record as a whole (their rights: export, erase).
    pub const PATIENT_RECORD: Code = Code::new(DICOM, "110110", "Patient Record");
    /// The audit trail itself acted on (retention removing its oldest
    /// records).
    pub const AUDIT_LOG_USED: Code = Code::new(DICOM, "110101", "Audit Log Used");
    /// Who may call the gateway changed (clients added or revoked).
    pub const SECURITY_ALERT: Code = Code::new(DICOM, "110113", "Security Alert");
}

/// Agent types (`AuditEvent.agent.type`).
pub mod agents {
    use super::{Code, DICOM, PARTICIPATION_TYPE};

    /// A client that reads (BALP: the information recipient).
    pub const RECIPIENT: Code = Code::new(PARTICIPATION_TYPE, "IRCP", "information recipient");
    /// Where data comes from (the sender of a message, the gateway of a delivery).
    pub const SOURCE: Code = Code::new(DICOM, "110153", "Source Role ID");
    /// Where data goes (a delivery's target).
    pub const DESTINATION: Code = Code::new(DICOM, "110152", "Destination Role ID");
    /// A program acting for whoever runs it (the command line).
    pub const APPLICATION: Code = Code::new(DICOM, "110150", "Application");
}

/// Entity roles (`AuditEvent.entity.role`).
pub mod roles {
    use super::{Code, OBJECT_ROLE};

    pub const PATIENT: Code = Code::new(OBJECT_ROLE, "1", "Patient");
    pub const REPORT: Code = Code::new(OBJECT_ROLE, "3", "Report");
    pub const DOMAIN_RESOURCE: Code = Code::new(OBJECT_ROLE, "4", "Domain Resource");
    pub const SECURITY_USER: Code = Code::new(OBJECT_ROLE, "11", "Security User Entity");
    pub const DATA_REPOSITORY: Code = Code::new(OBJECT_ROLE, "17", "Data Repository");
    pub const QUERY: Code = Code::new(OBJECT_ROLE, "24", "Query");
}

const PERSON: Code = Code::new(ENTITY_TYPE, "1", "Person");
const SYSTEM_OBJECT: Code = Code::new(ENTITY_TYPE, "2", "System Object");

/// `AuditEvent.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
    Execute,
}

impl Action {
    pub fn code(self) -> &'static str {
        match self {
            Action::Create => "C",
            Action::Read => "R",
            Action::Update => "U",
            Action::Delete => "D",
            Action::Execute => "E",
        }
    }
}

/// `AuditEvent.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Success,
    /// Not done, for a reason the requester can fix (a refusal).
    MinorFailure,
    /// Not done: the gateway or a peer failed.
    SeriousFailure,
}

impl Outcome {
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Success => "0",
            Outcome::MinorFailure => "4",
            Outcome::SeriousFailure => "8",
        }
    }
}

/// One participant (`AuditEvent.agent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub kind: Code,
    /// The client's name (`who.display`).
    pub who: String,
    /// The client's networks, or the system user running a command
    /// (`altId`).
    pub alt_id: String,
    /// The IP address it came from (`network.address`).
    pub address: Option<String>,
    pub requestor: bool,
}

impl Agent {
    /// A client of the gateway, known by its name and networks.
    pub fn client(kind: Code, who: &str, networks: &[String], address: Option<String>) -> Agent {
        Agent {
            kind,
            who: who.to_string(),
            alt_id: networks.join(" "),
            address,
            requestor: true,
        }
    }

    /// The gateway itself.
    pub fn gateway(kind: Code, requestor: bool) -> Agent {
        Agent {
            kind,
            who: "Passerelle".to_string(),
            alt_id: String::new(),
            address: None,
            requestor,
        }
    }

    fn write(&self, json: &mut JsonWriter) {
        let mark = json.open_object(None);
        let kind = json.open_object(Some("type"));
        let coding = json.open_array("coding");
        self.kind.write(json, None);
        json.close_array(coding);
        json.close_object(kind);
        let who = json.open_object(Some("who"));
        json.string("display", &self.who);
        json.close_object(who);
        json.string("altId", &self.alt_id);
        json.boolean("requestor", self.requestor);
        if let Some(address) = &self.address {
            let network = json.open_object(Some("network"));
            json.string("address", address);
            json.string("type", "2");
            json.close_object(network);
        }
        json.close_object(mark);
    }
}

/// One thing the event was about, other than a patient
/// (`AuditEvent.entity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    pub role: Option<Code>,
    /// A business identifier of the thing (`what.identifier.value`): a
    /// message's control ID, a client's name.
    pub identifier: Option<String>,
    pub description: String,
    /// Named values (`detail`: `type` and `valueString`).
    pub details: Vec<(String, String)>,
}

impl Entity {
    pub fn new(role: Option<Code>, description: impl Into<String>) -> Entity {
        Entity {
            role,
            identifier: None,
            description: description.into(),
            details: Vec::new(),
        }
    }

    /// A query, its values masked (`query=***`) by the caller.
    pub fn query(description: impl Into<String>, masked: Option<String>) -> Entity {
        let mut entity = Entity::new(Some(roles::QUERY), description);
        if let Some(masked) = masked.filter(|q| !q.is_empty()) {
            entity.details.push(("query".to_string(), masked));
        }
        entity
    }

    pub fn identified(mut self, identifier: impl Into<String>) -> Entity {
        let identifier = identifier.into();
        if !identifier.is_empty() {
            self.identifier = Some(identifier);
        }
        self
    }

    /// Adds a detail (empty values are left out).
    pub fn detail(mut self, kind: impl Into<String>, value: impl Into<String>) -> Entity {
        let value = value.into();
        if !value.is_empty() {
            self.details.push((kind.into(), value));
        }
        self
    }

    fn write(&self, json: &mut JsonWriter) {
        let mark = json.open_object(None);
        if let Some(identifier) = &self.identifier {
            let what = json.open_object(Some("what"));
            let business = json.open_object(Some("identifier"));
            json.string("value", identifier);
            json.close_object(business);
            json.close_object(what);
        }
        SYSTEM_OBJECT.write(json, Some("type"));
        if let Some(role) = self.role {
            role.write(json, Some("role"));
        }
        json.string("description", &self.description);
        let details = json.open_array("detail");
        for (kind, value) in &self.details {
            let detail = json.open_object(None);
            json.string("type", kind);
            json.string("valueString", value);
            json.close_object(detail);
        }
        json.close_array(details);
        json.close_object(mark);
    }
}

/// One AuditEvent under construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    kind: Code,
    subtype: Code,
    action: Action,
    recorded: String,
    outcome: Outcome,
    outcome_desc: String,
    agents: Vec<Agent>,
    patients: Vec<String>,
    entities: Vec<Entity>,
}

impl Event {
    /// An event of `kind` and `subtype`, recorded at `recorded` (a FHIR
    /// instant), a success until said otherwise.
    pub fn new(kind: Code, subtype: Code, action: Action, recorded: impl Into<String>) -> Event {
        Event {
            kind,
            subtype,
            action,
            recorded: recorded.into(),
            outcome: Outcome::Success,
            outcome_desc: String::new(),
            agents: Vec::new(),
            patients: Vec::new(),
            entities: Vec::new(),
        }
    }

    pub fn outcome(mut self, outcome: Outcome, description: impl Into<String>) -> Event {
        self.outcome = outcome;
        self.outcome_desc = description.into();
        self
    }

    pub fn agent(mut self, agent: Agent) -> Event {
        self.agents.push(agent);
        self
    }

    /// A patient the event concerns, as `Patient/{id}` of the repository
    /// (anything else is left out: a trail holds no identifier values).
    pub fn patient(mut self, reference: &str) -> Event {
        let is_reference = reference
            .strip_prefix("Patient/")
            .is_some_and(|id| !id.is_empty() && !id.contains(['/', ' ', '|']));
        if is_reference && !self.patients.iter().any(|p| p == reference) {
            self.patients.push(reference.to_string());
        }
        self
    }

    pub fn patients<'a>(mut self, references: impl IntoIterator<Item = &'a String>) -> Event {
        for reference in references {
            self = self.patient(reference);
        }
        self
    }

    pub fn entity(mut self, entity: Entity) -> Event {
        self.entities.push(entity);
        self
    }

    /// The patients named, sorted (the store finds the record under each).
    pub fn patient_references(&self) -> Vec<String> {
        let mut patients = self.patients.clone();
        patients.sort();
        patients
    }

    /// The AuditEvent as FHIR JSON, without empty members.
    pub fn to_json(&self) -> String {
        let mut json = JsonWriter::default();
        let event = json.open_object(None);
        json.string("resourceType", "AuditEvent");
        self.kind.write(&mut json, Some("type"));
        let subtype = json.open_array("subtype");
        self.subtype.write(&mut json, None);
        json.close_array(subtype);
        json.string("action", self.action.code());
        json.string("recorded", &self.recorded);
        json.string("outcome", self.outcome.code());
        json.string("outcomeDesc", &self.outcome_desc);
        let agents = json.open_array("agent");
        for agent in &self.agents {
            agent.write(&mut json);
        }
        json.close_array(agents);
        let source = json.open_object(Some("source"));
        let observer = json.open_object(Some("observer"));
        json.string("display", "Passerelle");
        json.close_object(observer);
        let kinds = json.open_array("type");
        Code::new(SOURCE_TYPE, "4", "Application Server").write(&mut json, None);
        json.close_array(kinds);
        json.close_object(source);
        let entities = json.open_array("entity");
        let mut patients = self.patient_references();
        patients.dedup();
        for patient in &patients {
            let entity = json.open_object(None);
            let what = json.open_object(Some("what"));
            json.string("reference", patient);
            json.close_object(what);
            PERSON.write(&mut json, Some("type"));
            roles::PATIENT.write(&mut json, Some("role"));
            json.close_object(entity);
        }
        for entity in &self.entities {
            entity.write(&mut json);
        }
        json.close_array(entities);
        json.close_object(event);
        json.finish()
    }
}

/// Writes JSON text member by member, leaving out what FHIR JSON has none
/// of: empty strings, and objects and arrays left with no member. It
/// writes the text directly: a tree of `serde_json::Value`s, hashed maps
/// and all, then a pass removing the empty members, made two of these
/// records a message the largest cost of storing a message locally after
/// SQLite itself (docs/performance.md).
#[derive(Default)]
struct JsonWriter {
    out: Vec<u8>,
    /// For each object or array open, whether a member was written in it.
    filled: Vec<bool>,
}

impl JsonWriter {
    /// The separator, then the key (none in an array).
    fn begin_member(&mut self, key: Option<&str>) {
        if self.filled.last() == Some(&true) {
            self.out.push(b',');
        }
        if let Some(key) = key {
            self.quoted(key);
            self.out.push(b':');
        }
    }

    fn member_written(&mut self) {
        if let Some(filled) = self.filled.last_mut() {
            *filled = true;
        }
    }

    fn quoted(&mut self, text: &str) {
        // serde_json's escaping, into the buffer; writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.out, text);
    }

    /// A string member, left out when empty.
    fn string(&mut self, key: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        self.begin_member(Some(key));
        self.quoted(value);
        self.member_written();
    }

    fn boolean(&mut self, key: &str, value: bool) {
        self.begin_member(Some(key));
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
        self.member_written();
    }

    /// Opens an object (a member when `key` is given, else an array item);
    /// returns where it began, for [`JsonWriter::close_object`].
    fn open_object(&mut self, key: Option<&str>) -> usize {
        self.open(key, b'{')
    }

    fn open_array(&mut self, key: &str) -> usize {
        self.open(Some(key), b'[')
    }

    fn open(&mut self, key: Option<&str>, bracket: u8) -> usize {
        let mark = self.out.len();
        self.begin_member(key);
        self.out.push(bracket);
        self.filled.push(false);
        mark
    }

    /// Closes the object opened at `mark`, or takes it out when it holds
    /// no member.
    fn close_object(&mut self, mark: usize) {
        self.close(mark, b'}');
    }

    fn close_array(&mut self, mark: usize) {
        self.close(mark, b']');
    }

    fn close(&mut self, mark: usize, bracket: u8) {
        if self.filled.pop() == Some(true) {
            self.out.push(bracket);
            self.member_written();
        } else {
            self.out.truncate(mark);
        }
    }

    fn finish(self) -> String {
        // Only whole strings and ASCII punctuation were written.
        String::from_utf8(self.out)
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
    }
}

/// A value fit for a record: at most `max` characters, printable ones only
/// (what a sender put in MSH-10 or a file name given on the command line
/// cannot forge a line or hide in control characters).
pub fn bounded(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn events_are_fhir_json_without_empty_members() {
        let event = Event::new(
            types::IMPORT,
            Code::new(PASSERELLE_SUBTYPE, "hl7v2-message", ""),
            Action::Create,
            "2026-12-05T08:00:00.000Z",
        )
        .outcome(Outcome::MinorFailure, "refused")
        .agent(Agent::client(
            agents::SOURCE,
            "lab",
            &["nord".to_string()],
            Some("10.0.0.7".into()),
        ))
        .patient("Patient/p1")
        .patient("Patient/p1")
        .patient("279035121518989")
        .entity(
            Entity::new(None, "ORU^R01")
                .identified("C1")
                .detail("MSH-9", "ORU^R01")
                .detail("empty", ""),
        );
        let value: Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(value["type"]["code"], "110107");
        assert_eq!(value["subtype"][0]["code"], "hl7v2-message");
        assert!(value["subtype"][0].get("display").is_none());
        assert_eq!(value["outcome"], "4");
        assert_eq!(value["agent"][0]["who"]["display"], "lab");
        assert_eq!(value["agent"][0]["altId"], "nord");
        assert_eq!(value["agent"][0]["network"]["address"], "10.0.0.7");
        assert_eq!(value["agent"][0]["requestor"], true);
        // One patient, by reference; the identifier value is not kept.
        assert_eq!(event.patient_references(), ["Patient/p1"]);
        assert_eq!(value["entity"][0]["what"]["reference"], "Patient/p1");
        assert_eq!(value["entity"][1]["what"]["identifier"]["value"], "C1");
        assert_eq!(value["entity"][1]["detail"].as_array().unwrap().len(), 1);
        assert!(value["entity"][1].get("role").is_none());
        assert!(!event.to_json().contains("279035121518989"));
    }

    /// The text, byte for byte, that the trail hashes: what the records
    /// built as `serde_json` trees and stripped of empty members were.
    #[test]
    fn events_keep_their_text_member_for_member() {
        let event = Event::new(
            types::IMPORT,
            Code::new(PASSERELLE_SUBTYPE, "hl7v2-message", ""),
            Action::Create,
            "2026-12-05T08:00:00.000Z",
        )
        .outcome(Outcome::MinorFailure, "refused \"quoted\"\n\u{1}é")
        .agent(Agent::client(
            agents::SOURCE,
            "lab",
            &["nord".to_string(), "sud".to_string()],
            Some("10.0.0.7".into()),
        ))
        .agent(Agent::client(agents::SOURCE, "", &[], Some(String::new())))
        .agent(Agent::gateway(agents::SOURCE, false))
        .patient("Patient/p2")
        .patient("Patient/p1")
        .entity(
            Entity::new(None, "ORU^R01")
                .identified("C1")
                .detail("MSH-9", "ORU^R01")
                .detail("empty", ""),
        )
        .entity(Entity::new(Some(roles::REPORT), ""));
        assert_eq!(
            event.to_json(),
            r#"{"resourceType":"AuditEvent","type":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110107","display":"Import"},"subtype":[{"system":"urn:passerelle:audit-subtype","code":"hl7v2-message"}],"action":"C","recorded":"2026-12-05T08:00:00.000Z","outcome":"4","outcomeDesc":"refused \"quoted\"\n\u0001é","agent":[{"type":{"coding":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110153","display":"Source Role ID"}]},"who":{"display":"lab"},"altId":"nord sud","requestor":true,"network":{"address":"10.0.0.7","type":"2"}},{"type":{"coding":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110153","display":"Source Role ID"}]},"requestor":true,"network":{"type":"2"}},{"type":{"coding":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110153","display":"Source Role ID"}]},"who":{"display":"Passerelle"},"requestor":false}],"source":{"observer":{"display":"Passerelle"},"type":[{"system":"http://terminology.hl7.org/CodeSystem/security-source-type","code":"4","display":"Application Server"}]},"entity":[{"what":{"reference":"Patient/p1"},"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"1","display":"Person"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"1","display":"Patient"}},{"what":{"reference":"Patient/p2"},"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"1","display":"Person"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"1","display":"Patient"}},{"what":{"identifier":{"value":"C1"}},"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"2","display":"System Object"},"description":"ORU^R01","detail":[{"type":"MSH-9","valueString":"ORU^R01"}]},{"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"2","display":"System Object"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"3","display":"Report"}}]}"#
        );
        let bare = Event::new(
            types::REST,
            Code::new(PASSERELLE_SUBTYPE, "x", "X"),
            Action::Read,
            "",
        );
        assert_eq!(
            bare.to_json(),
            r#"{"resourceType":"AuditEvent","type":{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest","display":"RESTful Operation"},"subtype":[{"system":"urn:passerelle:audit-subtype","code":"x","display":"X"}],"action":"R","outcome":"0","source":{"observer":{"display":"Passerelle"},"type":[{"system":"http://terminology.hl7.org/CodeSystem/security-source-type","code":"4","display":"Application Server"}]}}"#
        );
    }

    #[test]
    fn bounded_values_hold_no_control_characters() {
        assert_eq!(bounded("A\rB\x1b[31mC", 4), "AB[3");
    }
}
